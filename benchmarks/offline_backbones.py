"""Parameter count and forward+backward-to-input time of every ``offline:`` backbone for one 5 s clip.

The input is what one 5 s clip becomes at each backbone's input: a ``(1, 5 * sample_rate)`` waveform for
speech models, one image at the spec size for image models (a 5 s clip rendered as one image), one clip
of ``spec.frames`` frames for video models. Only the frozen backbone is timed (the rendering program is
not); the loss is the sum of the logits (or features), backpropagated to the input. Reported: the median
and min of ``--repeats`` timed runs after ``--warmup`` untimed ones, on the CPU threads torch uses here,
the median process CPU seconds (steadier when the machine is shared) and the 1-minute load average.

Usage: ``python benchmarks/offline_backbones.py [--models offline:crepe ...] [--repeats 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from backbones import registry

OFFLINE_MODELS = (
    "offline:efficientnet_lite0",
    "offline:efficientnet_lite0_video",
    "offline:whisper_tiny_en",
    "offline:crepe",
)


def clip_input(backbone, seconds: float, seed: int = 0) -> torch.Tensor:
    """One example at the backbone's input for a clip of ``seconds``: ``(1, N)`` or ``(1, *spec.shape)``."""
    spec = backbone.spec
    g = torch.Generator().manual_seed(seed)
    if spec.modality in ("speech", "audio"):
        return 0.1 * torch.randn(1, int(round(seconds * spec.sample_rate)), generator=g)
    return torch.randn(1, *spec.shape, generator=g)


def time_forward_backward(backbone, x: torch.Tensor, repeats: int, warmup: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of forward + backward to ``x``, per run after ``warmup`` runs.

    CPU seconds are summed over this process's threads; on a shared machine they are the steadier number.
    """
    wall, cpu = [], []
    for i in range(warmup + repeats):
        inp = x.clone().requires_grad_(True)
        start, start_cpu = time.perf_counter(), time.process_time()
        out = backbone(inp)
        target = out.logits if out.logits is not None else out.features
        target.sum().backward()
        elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
        if not (inp.grad is not None and torch.isfinite(inp.grad).all()):
            raise RuntimeError(f"{backbone.name}: no finite gradient reached the input")
        if i >= warmup:
            wall.append(elapsed)
            cpu.append(elapsed_cpu)
    return wall, cpu


def measure(name: str, seconds: float, repeats: int, warmup: int) -> dict:
    """Build ``name`` and time it; returns one JSON-friendly row."""
    start = time.perf_counter()
    backbone = registry.create(name)
    load_s = time.perf_counter() - start
    x = clip_input(backbone, seconds)
    times, cpu_times = time_forward_backward(backbone, x, repeats, warmup)
    return {
        "backbone": name,
        "modality": backbone.spec.modality,
        "input_shape": list(x.shape),
        "parameters": backbone.num_parameters(),
        "load_s": round(load_s, 3),
        "fwd_bwd_median_s": round(statistics.median(times), 4),
        "fwd_bwd_min_s": round(min(times), 4),
        "fwd_bwd_cpu_median_s": round(statistics.median(cpu_times), 4),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "repeats": repeats,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Measure every requested offline backbone and print one line each (and optionally a JSON file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(OFFLINE_MODELS), help="backbone names")
    parser.add_argument("--seconds", type=float, default=5.0, help="clip length in seconds (speech inputs)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.seconds <= 0:
        parser.error("--repeats must be >= 1, --warmup >= 0 and --seconds > 0")
    registry.names()  # loads the registration lines
    unknown = [m for m in args.models if m not in registry.REGISTRY]
    if unknown:
        parser.error(f"unknown backbones {unknown}; known offline ones: {', '.join(OFFLINE_MODELS)}")
    cpu = platform.processor() or platform.machine()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu}", flush=True)
    print(f"# {'backbone':34s} {'input':22s} {'params':>11s} {'median s':>9s} {'min s':>7s} {'cpu s':>7s} {'load':>5s}")
    rows = []
    for name in args.models:
        row = measure(name, args.seconds, args.repeats, args.warmup)
        rows.append(row)
        shape = "x".join(map(str, row["input_shape"]))
        print(
            f"{name:36s} {shape:22s} {row['parameters']:11,d} {row['fwd_bwd_median_s']:9.3f} "
            f"{row['fwd_bwd_min_s']:7.3f} {row['fwd_bwd_cpu_median_s']:7.2f} {row['load_average_1min']:5.1f}",
            flush=True,
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
