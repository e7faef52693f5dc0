"""Achieved FLOP/s of a training step as a fraction of this machine's measured peak fp32 matmul FLOP/s (issue 7, 5b).

Peak: the median over ``--repeats`` of large square fp32 matmuls (``2 n^3`` FLOPs each), the best size reported.
Per method and batch: the FLOPs of one training step (forward + backward; the optimizer's element-wise update
is not counted) from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts matmuls, convolutions and
attention (the ops that dominate; element-wise ops are not counted, so the fraction is a lower bound), divided by
the median wall time of the full step (forward, loss, backward, AdamW). Methods: ``pad_linear``
(EfficientNet-Lite0 + padding program + linear mapper) and ``lora_linear`` (Whisper tiny.en encoder, LoRA r=8 on
q/v, linear head), on 5 s danum-gibbon clips.

Usage: ``python benchmarks/flops.py [--batches 8 32] [--repeats 3] [--data ../shared/data/danum-gibbon]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from step_models import IMAGE_BACKBONE, SPEECH_BACKBONE, build_method, clips, machine_line, make_step, median, timed
from torch.utils.flop_counter import FlopCounterMode


def peak_matmul(sizes: tuple[int, ...] = (1024, 2048, 3072), repeats: int = 5) -> dict:
    """Median fp32 GFLOP/s of ``n x n @ n x n`` for each size, and the best of the medians."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for n in sizes:
        a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        times = timed(lambda a=a, b=b: torch.mm(a, b), repeats, warmup=1)
        out[n] = 2 * n**3 / median(times) / 1e9
    per_size = {str(k): round(v, 1) for k, v in out.items()}
    return {"per_size_gflops": per_size, "peak_gflops": round(max(out.values()), 1)}


def step_flops(model: torch.nn.Module, wave: torch.Tensor) -> int:
    """FLOPs of one forward + backward (no optimizer) counted by FlopCounterMode."""
    target = torch.arange(len(wave)) % 5
    model.train()
    counter = FlopCounterMode(display=False)
    with counter:
        loss = torch.nn.functional.cross_entropy(model(wave), target)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def measure(method: str, batch: int, repeats: int, peak: float, data, image: str, speech: str) -> dict:
    model = build_method(method, image, speech)
    wave, source = clips(batch, 5.0, data)
    flops = step_flops(model, wave)
    times = timed(make_step(model, wave), repeats, warmup=1)
    achieved = flops / median(times) / 1e9
    return {
        "method": method,
        "batch": batch,
        "clips": source,
        "gflop_per_step": round(flops / 1e9, 2),
        "step_s_median": round(median(times), 3),
        "step_s_all": [round(t, 3) for t in times],
        "clips_per_s": round(batch / median(times), 2),
        "achieved_gflops": round(achieved, 2),
        "fraction_of_peak": round(achieved / peak, 4),
    }


def main(argv: list[str] | None = None) -> dict:
    """Measure the peak, then every method x batch; print one line each (and optionally write JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pad_linear", "lora_linear"])
    parser.add_argument("--batches", nargs="+", type=int, default=[8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-sizes", nargs="+", type=int, default=[1024, 2048, 3072])
    parser.add_argument("--data", type=Path, default=None, help="danum-gibbon folder (default ../shared/data/...)")
    parser.add_argument("--image-backbone", default=IMAGE_BACKBONE)
    parser.add_argument("--speech-backbone", default=SPEECH_BACKBONE)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    print(machine_line())
    peak = peak_matmul(tuple(args.matmul_sizes), max(args.repeats, 3))
    print(f"peak fp32 matmul: {peak['peak_gflops']} GFLOP/s (median per size: {peak['per_size_gflops']})")
    rows = []
    for method in args.methods:
        for batch in args.batches:
            row = measure(method, batch, args.repeats, peak["peak_gflops"], args.data, args.image_backbone,
                          args.speech_backbone)
            rows.append(row)
            print(f"{method:12s} batch {batch:3d}: {row['gflop_per_step']:8.1f} GFLOP/step, step "
                  f"{row['step_s_median']:.2f} s ({row['clips_per_s']:.1f} clips/s), {row['achieved_gflops']:.1f} "
                  f"GFLOP/s = {row['fraction_of_peak']:.3f} of peak  [{row['clips']}]", flush=True)
    after = peak_matmul(tuple(args.matmul_sizes), max(args.repeats, 3))
    print(f"peak fp32 matmul again after the steps: {after['peak_gflops']} GFLOP/s (fractions above use the first; "
          f"a large change means the machine's load changed during the run)")
    print(machine_line())
    result = {"peak": peak, "peak_after": after, "rows": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
