"""Peak memory of a training step per method, with activation checkpointing off and on (issue 7, 5f).

Each (method, checkpointing) runs in a fresh subprocess, so one run's allocations cannot hide another's. On CPU,
torch's allocator is invisible to ``tracemalloc``; the child reads the kernel's resident-set peak instead:
``VmHWM`` after resetting it through ``/proc/self/clear_refs`` once the model and batch are built (so the
figure is the step's own peak, not the weight loading's), with ``ru_maxrss`` (whole-process peak) reported
too. On CUDA it reads ``torch.cuda.max_memory_allocated``. Reported per row: resident memory after building
(weights + batch), the step's peak, the peak minus the resident memory (what the step itself needs:
activations, gradients, optimizer state), and the median step time, so checkpointing's memory-for-time trade
is read off one table.

Usage: ``python benchmarks/memory.py [--methods pad_linear lora_linear ...] [--batch 8] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch
from step_models import (
    IMAGE_BACKBONE,
    METHODS,
    SPEECH_BACKBONE,
    build_method,
    clips,
    finish,
    machine_line,
    make_step,
    median,
)
from step_models import timed as timed_calls

MB = 1024 * 1024
#: Methods whose backward runs through the backbone (the probe's does not: checkpointing cannot help it).
BACKWARD_THROUGH = ("pad_linear", "lora_linear", "prompt_linear", "finetune")


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's resident-set peak (VmHWM) of this process; False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(method: str, checkpointing: bool, batch: int, repeats: int, device: str, data, image, speech) -> dict:
    """Build, measure and return one row (runs inside the fresh subprocess)."""
    model = build_method(method, image, speech, checkpointing=checkpointing).to(device)
    wave, source = clips(batch, 5.0, data)
    wave = wave.to(device)
    step = make_step(model, wave)
    resident = _status_kb("VmRSS")  # weights + batch, before any step (optimizer state counts to the step)
    reset = _reset_peak()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        resident_mb = torch.cuda.memory_allocated() / MB
    times = timed_calls(step, repeats, warmup=1)
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / MB
    else:
        resident_mb = (resident or 0) / 1024
        maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak_mb = (_status_kb("VmHWM") or 0) / 1024 if reset else maxrss_kb / 1024
    return {
        "method": method,
        "checkpointing": checkpointing,
        "batch": batch,
        "clips": source,
        "peak_source": "cuda max_memory_allocated" if device.startswith("cuda") else
        ("VmHWM after reset" if reset else "ru_maxrss"),
        "resident_mb": round(resident_mb, 1),
        "step_peak_mb": round(peak_mb, 1),
        "step_extra_mb": round(peak_mb - resident_mb, 1),
        "process_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "step_s_median": round(median(times), 3),
        "step_s_all": [round(t, 3) for t in times],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    """Run every (method, checkpointing) in its own subprocess and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=None, help="danum-gibbon folder (default ../shared/data/...)")
    parser.add_argument("--image-backbone", default=IMAGE_BACKBONE)
    parser.add_argument("--speech-backbone", default=SPEECH_BACKBONE)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CHECKPOINTING"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        row = child(args.child[0], args.child[1] == "1", args.batch, args.repeats, args.device, args.data,
                    args.image_backbone, args.speech_backbone)
        print("ROW " + json.dumps(row))
        return [row]
    print(machine_line())
    rows = []
    for method in args.methods:
        for ckpt in (False, True) if method in BACKWARD_THROUGH else (False,):
            cmd = [sys.executable, __file__, "--child", method, "1" if ckpt else "0", "--batch", str(args.batch),
                   "--repeats", str(args.repeats), "--device", args.device, "--image-backbone",
                   args.image_backbone, "--speech-backbone", args.speech_backbone]
            if args.data is not None:
                cmd += ["--data", str(args.data)]
            # a fixed mmap threshold: glibc then returns every large freed block to the kernel at once, so the
            # resident set follows torch's live tensors instead of keeping freed activations in its arenas
            env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            lines = [ln for ln in done.stdout.splitlines() if ln.startswith("ROW ")]
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"{method} (checkpointing={ckpt}) failed:\n{done.stderr[-2000:]}")
            row = json.loads(lines[-1][4:])
            rows.append(row)
            print(f"{method:14s} ckpt {'on ' if ckpt else 'off'} batch {row['batch']}: resident "
                  f"{row['resident_mb']:7.1f} MB, step peak {row['step_peak_mb']:7.1f} MB, step needs "
                  f"{row['step_extra_mb']:7.1f} MB, step {row['step_s_median']:.2f} s  [{row['clips']}]", flush=True)
    return finish(rows, args.json)


if __name__ == "__main__":
    main()
