"""What the model-path benchmarks (flops.py, whisper_length.py, memory.py, compile.py) share.

The two reference methods of issue 7, built from the project's own parts:

* ``pad_linear``: ``offline:efficientnet_lite0`` behind a padding program (log-mel image in the middle, a learned
  frame around it) and a linear label mapper on its 1000 ImageNet logits
  (:class:`reprogram.methods.program.ReprogrammedModel`);
* ``lora_linear``: ``offline:whisper_tiny_en`` with LoRA r=8 on the q/v projections (``reprogram.peft``) and a
  linear head on the masked mean of the last layer (:class:`reprogram.mappers.heads.SpeechClassifier`);

plus ``prompt_linear`` (shallow prompt tuning, 16 prompts), ``probe`` (a linear head on frozen features: no backward
through the encoder) and ``finetune`` (every Whisper weight trains) for the memory table. Clips are real 5 s
danum-gibbon clips when ``../shared/data/danum-gibbon`` exists (else seeded noise, said in the output).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python benchmarks/<script>.py` from anywhere
    sys.path.insert(0, str(ROOT))

from backbones import registry  # noqa: E402
from reprogram import mappers, transforms  # noqa: E402
from reprogram.mappers.heads import LinearHead, SpeechClassifier  # noqa: E402
from reprogram.peft import apply  # noqa: E402
from reprogram.runtime.accel import enable_checkpointing  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "danum-gibbon"
RATE = 16000
NUM_CLASSES = 5  # danum-gibbon: duet, noise, long.argus, hornbill.helmeted, hornbill.rhino
METHODS = ("pad_linear", "lora_linear", "prompt_linear", "probe", "finetune")
IMAGE_BACKBONE = "offline:efficientnet_lite0"
SPEECH_BACKBONE = "offline:whisper_tiny_en"


def build_method(method: str, image_backbone: str = IMAGE_BACKBONE, speech_backbone: str = SPEECH_BACKBONE,
                 seed: int = 0, checkpointing: bool = False) -> nn.Module:
    """The model of ``method`` (one of :data:`METHODS`): ``forward(wave (B, N)) -> (B, 5)`` logits.

    With ``checkpointing`` the bare backbone's blocks are checkpointed before any PEFT method is attached
    (the order :func:`reprogram.runtime.accel.enable_checkpointing` asks for).
    """
    torch.manual_seed(seed)
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}; choose from {METHODS}")
    backbone = registry.create(image_backbone if method == "pad_linear" else speech_backbone)
    if checkpointing:
        enable_checkpointing(backbone)
    if method == "pad_linear":
        from reprogram.methods.program import ReprogrammedModel

        program = transforms.create("pad", backbone.spec, sample_rate=RATE)
        return ReprogrammedModel(program, backbone, mappers.create("linear", backbone, NUM_CLASSES))
    if method == "lora_linear":
        apply(backbone, "lora", r=8, targets=("q", "v"))
    elif method == "prompt_linear":
        apply(backbone, "prompt", length=16)
    elif method == "finetune":
        apply(backbone, "finetune")
    return SpeechClassifier(backbone, LinearHead(backbone.hidden_size, NUM_CLASSES))


def clips(n: int, seconds: float = 5.0, data_dir: str | Path | None = None, seed: int = 0) -> tuple[torch.Tensor, str]:
    """``(n, seconds * 16000)`` waveforms: the first ``n`` danum-gibbon clips (cycled), cropped / zero-padded.

    Returns:
        The batch and where it came from (``"danum-gibbon (k files)"`` or ``"noise (danum-gibbon absent)"``).
    """
    import csv

    import soundfile as sf

    length = int(round(seconds * RATE))
    folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        g = torch.Generator().manual_seed(seed)
        return 0.1 * torch.randn(n, length, generator=g), f"noise ({folder} absent)"
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))[: max(n, 1)]
    out = torch.zeros(n, length)
    for i in range(n):
        audio, rate = sf.read(folder / rows[i % len(rows)]["path"], dtype="float32", always_2d=True)
        if rate != RATE:
            raise ValueError(f"{rows[i % len(rows)]['path']}: {rate} Hz, expected {RATE}")
        mono = torch.from_numpy(audio.mean(axis=1))[:length]
        out[i, : len(mono)] = mono
    return out, f"danum-gibbon ({min(n, len(rows))} files)"


def make_step(model: nn.Module, wave: torch.Tensor, ctx: Callable | None = None) -> Callable[[], float]:
    """One training step (forward, cross-entropy, backward, AdamW step) on a fixed batch; returns the loss."""
    target = torch.arange(len(wave)) % NUM_CLASSES
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    probe = not any(p.requires_grad for p in getattr(model, "backbone", model).parameters())
    probe = probe and isinstance(model, SpeechClassifier)
    model.train()

    def step() -> float:
        with ctx() if ctx is not None else torch.enable_grad():
            if probe:  # a linear probe never backpropagates into the encoder
                with torch.no_grad():
                    out = model.backbone(wave)
                logits = model.head(out.hidden_states, out.mask)
            else:
                logits = model(wave)
            loss = nn.functional.cross_entropy(logits.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def timed(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def machine_line() -> str:
    """Threads, load average and versions: the conditions of a measurement."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
            f"load average {load}")


def finish(rows: list[dict], json_path: Path | None) -> list[dict]:
    """End a benchmark: print the machine line again (load may have changed) and write ``rows`` as JSON if asked.

    Args:
        rows: one dict per measurement.
        json_path: output file, or None to print only.

    Returns:
        ``rows``.
    """
    print(machine_line())
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=1))
    return rows
