"""What the training-loop benchmarks (``throughput.py``, ``scaling.py``) share: the measured methods, their
command-line options, and the runner's own data path (config, split, cached waveforms, datasets), so that they
time exactly what ``reprogram run`` trains.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_models import ROOT  # noqa: E402

from reprogram.experiment.config import ExperimentConfig, config_from_dict  # noqa: E402
from reprogram.experiment.inputs import load_data, make_dataset, make_split, waveforms  # noqa: E402
from reprogram.methods import Built  # noqa: E402

#: name -> (backbone, tiny twin, method.name, method.budget, method.options)
METHODS: dict[str, tuple[str, str, str, int | None, dict]] = {
    "pad_linear": ("offline:efficientnet_lite0", "tiny:vit", "program", None, {"transform": "pad", "mapper": "linear"}),
    "video_program": ("offline:efficientnet_lite0_video", "tiny:r3d", "program", None,
                      {"transform": "video", "mapper": "linear"}),
    "wave_program": ("offline:whisper_tiny_en", "tiny:whisper", "program", None, {"transform": "wave_embed"}),
    "lora_qv_r8": ("offline:whisper_tiny_en", "tiny:whisper", "lora", 8, {"targets": ["q", "v"]}),
    "prompt_p8": ("offline:whisper_tiny_en", "tiny:whisper", "prompt", 8, {}),
}

def add_common_arguments(parser: argparse.ArgumentParser, methods: Sequence[str], repeats_help: str) -> None:
    """Options shared by throughput.py and scaling.py (``methods``: the default of ``--methods``)."""
    parser.add_argument("--methods", default=",".join(methods), help=f"comma-separated, of {sorted(METHODS)}")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 32; --tiny: 4)")
    parser.add_argument("--repeats", type=int, default=None, help=repeats_help)
    parser.add_argument("--synthetic", action="store_true", help="synthetic corpus instead of danum-gibbon")
    parser.add_argument("--tiny", action="store_true", help="tiny:* random backbones and a few clips (tests)")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("REPROGRAM_SHARED_DATA", ROOT.parent / "shared" / "data")),
                        help="folder holding danum-gibbon/ (default $REPROGRAM_SHARED_DATA or ../shared/data)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="waveform cache folder (default: a fresh temporary folder, removed afterwards)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers (training.num_workers)")
    parser.add_argument("--threads", type=int, default=None,
                        help="pin this process to N cores (sched_setaffinity), which configure_threads and the "
                             "training loop read (default: every core it may use)")
    parser.add_argument("--prefix-cache", action=argparse.BooleanOptionalAction, default=True,
                        help="as the runner: methods that train above a frozen prefix (prompts, LoRA) train on its "
                             "cached activations; --no-prefix-cache runs the frozen part every step")
    parser.add_argument("--device", default="cpu", help="where the model trains (training.device): cpu, cuda, cuda:1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; CPU needs nothing), so wall clocks are exact."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def limit_cores(n: int | None) -> None:
    """Restrict this process to its first ``n`` usable cores (no-op for ``None`` or where unsupported)."""
    if n is None:
        return
    if n < 1:
        raise SystemExit(f"--threads must be >= 1, got {n}")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:n])
    else:  # pragma: no cover - macOS, Windows
        print(f"# --threads {n}: cannot pin cores on this platform; using every core")


def parse_methods(text: str) -> list[str]:
    names = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise SystemExit(f"--methods: unknown {unknown or '(none)'}; choose from {', '.join(METHODS)}")
    return names


def data_choice(args: argparse.Namespace) -> tuple[str | None, str]:
    """``(data.path, what it is)``: danum-gibbon, or the synthetic corpus (asked for, or danum-gibbon absent)."""
    folder = args.data_dir / "danum-gibbon"
    if args.synthetic:
        return None, "synthetic call-type corpus (--synthetic)"
    if not (folder / "manifest.csv").is_file():
        return None, f"synthetic call-type corpus (real recordings not found at {folder})"
    return str(folder), f"danum-gibbon ({folder})"


def experiment_config(name: str, args: argparse.Namespace, data_path: str | None, batch: int,
                      budget: int | None = None, epochs: int = 1) -> ExperimentConfig:
    """The ``ExperimentConfig`` of method ``name`` as ``reprogram run`` would resolve it."""
    backbone, tiny, method, default_budget, options = METHODS[name]
    task = {"label_column": "label", "group_column": "recorder"} if data_path else {"label_column": "call_type"}
    return config_from_dict({
        "seed": args.seed,
        "data": {"path": data_path or "synthetic", "clip_seconds": 5.0},
        "task": task,
        "method": {"name": method, "budget": default_budget if budget is None else budget, "options": dict(options)},
        "backbone": {"name": tiny if args.tiny else backbone},
        "training": {"batch_size": batch, "epochs": epochs, "patience": None, "num_workers": args.num_workers,
                     "device": getattr(args, "device", "cpu")},
    })


def train_rows(config: ExperimentConfig) -> tuple:
    """``(table, train row indices, val row indices)`` of the runner's split of ``config``'s data."""
    table = load_data(config.data.path, config)
    parts = make_split(table, config).parts()
    return table, list(parts["train"]), list(parts["val"])


def cycled(rows: Sequence[int], n: int) -> list[int]:
    """The first ``n`` of ``rows``, cycled when ``n`` exceeds them."""
    return [rows[i % len(rows)] for i in range(n)]


@dataclass
class Training:
    """What the runner trains: the model and datasets (cached-prefix ones when that path applies).

    Attributes:
        model: the model the training loop trains (``Built.model``, or the upper part on cached activations).
        train: its training items (random-crop waveforms, or cached activations).
        val: validation items of ``val_rows`` (or None when none were asked for).
        center: center-crop waveforms of the training rows (the runner's ``prepare`` input; the bare path's batch).
        prefix: the runner's ``prefix_cache`` record (``used``, ``kind``, ``cut`` ... or ``reason``).
        setup_s: one-off seconds (waveform cache built or opened, prefix activations computed or opened).
    """

    model: nn.Module
    train: Dataset
    val: Dataset | None
    center: Dataset
    prefix: dict
    setup_s: float


def training_inputs(config: ExperimentConfig, built: Built, table, rows: Sequence[int], cache_dir: Path,
                    prefix: bool = True, val_rows: Sequence[int] = ()) -> Training:
    """Datasets and model of ``table[rows]`` as :func:`reprogram.experiment.runner.run_experiment` prepares them.

    As in the runner: every clip of ``table`` decoded once into the waveform cache (memory-mapped) and shared
    by every subset; random crops for training, center crops for ``prepare`` (prompt init) and evaluation;
    then, unless ``prefix`` is False (the runner's ``--no-prefix-cache``),
    :func:`reprogram.runtime.prefix.prepare_prefix`
    (methods that train above a frozen prefix train on its activations, computed once into ``cache_dir``).
    """
    from reprogram.runtime.prefix import prepare_prefix

    t0 = time.perf_counter()
    rate, classes = built.sample_rate, table.classes
    packed = waveforms(table, rate, cache_dir)
    train = make_dataset(table.subset(rows), rate, config, classes, "random", packed)
    center = make_dataset(table.subset(rows), rate, config, classes, "center", packed)
    val = make_dataset(table.subset(val_rows), rate, config, classes, "center", packed) if val_rows else None
    if built.prepare is not None:  # e.g. prompts from real frames of the first training clips
        built.prepare(center)
    model, record = built.model, {"used": False, "reason": "turned off (--no-prefix-cache)"}
    if prefix:
        full = make_dataset(table, rate, config, classes, "center", packed)
        parts = {"train": list(rows), **({"val": list(val_rows)} if val_rows else {})}
        cached = prepare_prefix(built, train, full, parts, None, cache_dir, batch_size=config.training.batch_size)
        record = cached.record
        if cached.model is not None:
            model, train, val = cached.model, cached.train, cached.evals.get("val")
    return Training(model, train, val, center, record, time.perf_counter() - t0)


def describe_prefix(record: dict) -> str:
    """One line for the runner's ``prefix_cache`` record."""
    if record.get("used"):
        return f"trained on cached activations ({record['kind']}, cut {record['cut']}, {record.get('point')})"
    return f"no prefix cache ({record.get('reason')})"


