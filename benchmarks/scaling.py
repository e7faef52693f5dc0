"""Issue 7 (e): how the real training loop's epoch time grows with the number of clips (linear) and the budget (flat).

Each point is one epoch of :func:`reprogram.experiment.train.train` (the toolkit's one training loop: loader, AdamW,
clipping, schedule, and the validation pass on a fixed set of one batch, which adds a constant) on a model
built by :func:`reprogram.methods.build` over the runner's data helpers and waveform cache (see
``benchmarks/throughput.py``). The epoch time is the loop's own ``history[0]["seconds"]``.

1. Clips: epoch seconds for ``--sizes`` training clips (the split's training rows, cycled when a size exceeds
   them: said in the output), seconds per clip per size, and the least-squares line ``seconds = slope * clips +
   intercept`` (slope = seconds per clip; R^2 and the largest relative residual show how linear it is).
2. Budget: epoch seconds at ``--budget-clips`` clips for each budget of the method's knob (pad width of the
   padding program, LoRA rank, prompt length), as a ratio to the smallest budget (flat = 1).

Every model gets one untimed warm-up epoch on one batch first. Usage:
python benchmarks/scaling.py [--methods pad_linear,lora_qv_r8,prompt_p8] [--sizes 32,64,128,256]
       [--budget-clips 64] [--batch 32] [--repeats 1] [--synthetic] [--tiny] [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Subset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_models import finish, machine_line  # noqa: E402
from training_setup import (  # noqa: E402
    add_common_arguments,
    cycled,
    data_choice,
    describe_prefix,
    experiment_config,
    limit_cores,
    parse_methods,
    train_rows,
    training_inputs,
)

from reprogram.experiment.train import count_parameters, train  # noqa: E402
from reprogram.methods import build  # noqa: E402
from reprogram.runtime.threads import configure_threads  # noqa: E402

#: method -> budgets swept (full size, --tiny)
BUDGETS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "pad_linear": ((4, 8, 16, 32, 48), (2, 16)),
    "video_program": ((4, 8, 16, 32, 48), (2, 8)),
    "lora_qv_r8": ((1, 2, 4, 8, 16, 32), (1, 32)),
    "prompt_p8": ((1, 4, 16, 64), (1, 64)),
}
DEFAULT_METHODS = ("pad_linear", "lora_qv_r8", "prompt_p8")


class Bench:
    """One method's config, data rows and cache, and a way to time training epochs on ``n`` clips."""

    def __init__(self, name: str, args: argparse.Namespace, data_path: str | None, cache_dir: Path) -> None:
        self.name, self.args, self.data_path, self.cache_dir = name, args, data_path, cache_dir
        config = experiment_config(name, args, data_path, args.batch)
        self.table, self.rows, val = train_rows(config)
        self.val_rows = cycled(val, args.batch)  # one batch: a constant validation pass per epoch

    def epochs(self, n: int, budget: int | None = None) -> tuple[list[float], int, object, dict]:
        """Seconds of ``--repeats`` one-epoch trainings on ``n`` clips, after one warm-up epoch on one batch.

        Returns:
            ``(epoch seconds, trainable parameters, the method's budget as built, the prefix-cache record)``.
        """
        args = self.args
        config = experiment_config(self.name, args, self.data_path, args.batch, budget=budget)
        built = build(config, self.table.classes)
        classes = self.table.classes
        run = training_inputs(config, built, self.table, cycled(self.rows, n), self.cache_dir, args.prefix_cache,
                              self.val_rows)
        warm = Subset(run.train, range(min(args.batch, len(run.train))))
        train(run.model, warm, run.val, classes, config.training, seed=config.seed, progress=False)
        times = []
        for _ in range(args.repeats):
            result = train(run.model, run.train, run.val, classes, config.training, seed=config.seed, progress=False)
            times.append(result.history[0]["seconds"])
        return times, count_parameters(run.model)[0], config.method.budget, run.prefix


def fit_line(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares ``y = slope * x + intercept`` with R^2 and the largest residual relative to ``y``."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    pred = slope * np.asarray(x) + intercept
    ss_res, ss_tot = float(((np.asarray(y) - pred) ** 2).sum()), float(((np.asarray(y) - np.mean(y)) ** 2).sum())
    return {"slope_s_per_clip": float(slope), "intercept_s": float(intercept),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
            "max_rel_residual": float(np.max(np.abs(np.asarray(y) - pred) / np.asarray(y)))}


def clip_sweep(bench: Bench, sizes: Sequence[int]) -> list[dict]:
    rows = []
    for n in sizes:
        times, _, _, prefix = bench.epochs(n)
        med = statistics.median(times)
        rows.append({"kind": "clips", "method": bench.name, "clips": n, "cycled": n > len(bench.rows),
                     "epoch_s": med, "epoch_s_all": times, "s_per_clip": med / n, "prefix_cache": prefix})
    big = rows[-1]["s_per_clip"]
    print(f"{bench.name:<14} {describe_prefix(rows[-1]['prefix_cache'])}")
    for r in rows:
        r["s_per_clip_vs_largest"] = r["s_per_clip"] / big
        print(f"{bench.name:<14} clips {r['clips']:>5}{' (cycled)' if r['cycled'] else '':<10} epoch "
              f"{r['epoch_s']:8.3f} s  {1e3 * r['s_per_clip']:8.2f} ms/clip  ({r['s_per_clip_vs_largest']:.2f}x "
              "the largest size's)")
    fit = {"kind": "clips_fit", "method": bench.name, **fit_line(sizes, [r["epoch_s"] for r in rows])}
    print(f"{bench.name:<14} fit: epoch = {1e3 * fit['slope_s_per_clip']:.2f} ms/clip x clips + "
          f"{fit['intercept_s']:.3f} s   R^2 {fit['r2']:.4f}   max |residual| {fit['max_rel_residual']:.1%}")
    return [*rows, fit]


def budget_sweep(bench: Bench, budgets: Sequence[int], clips: int) -> list[dict]:
    rows = []
    for b in budgets:
        times, trainable, built_budget, prefix = bench.epochs(clips, budget=b)
        rows.append({"kind": "budget", "method": bench.name, "budget": built_budget, "clips": clips,
                     "trainable": trainable, "epoch_s": statistics.median(times), "epoch_s_all": times,
                     "prefix_cache": prefix})
    for r in rows:
        r["ratio_to_smallest"] = r["epoch_s"] / rows[0]["epoch_s"]
        print(f"{bench.name:<14} budget {r['budget']:>4}  trainable {r['trainable']:>9,}  epoch {r['epoch_s']:8.3f} s"
              f"  ({r['ratio_to_smallest']:.3f}x the smallest budget's)")
    return rows


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise SystemExit(f"expected positive integers, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser, list(DEFAULT_METHODS), "timed one-epoch trainings per point, median (default 1)")
    parser.add_argument("--sizes", default=None, help="training clip counts (default 32,64,128,256; --tiny: 4,8,12)")
    parser.add_argument("--budget-clips", type=int, default=None, help="clips of the budget sweep (default 64)")
    parser.add_argument("--skip", choices=("clips", "budget"), default=None, help="leave one sweep out")
    args = parser.parse_args(argv)
    args.batch = args.batch or (4 if args.tiny else 32)
    args.repeats = args.repeats or 1
    sizes = sorted(_ints(args.sizes or ("4,8,12" if args.tiny else "32,64,128,256")))
    budget_clips = args.budget_clips or (4 if args.tiny else 64)
    if len(sizes) < 2 and args.skip != "clips":
        raise SystemExit("--sizes needs at least two sizes to fit a line")
    methods = parse_methods(args.methods)
    data_path, source = data_choice(args)
    limit_cores(args.threads)
    configure_threads(args.num_workers)  # what train() sets again for its loader
    print(machine_line())
    print(f"# data: {source}; 5 s clips{', tiny:* backbones' if args.tiny else ''}; batch {args.batch}; "
          f"one epoch of reprogram.experiment.train.train per point (its history seconds, incl. a 1-batch "
          f"validation pass), "
          f"median of {args.repeats}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="scaling-cache-") as tmp:
        for name in methods:
            bench = Bench(name, args, data_path, args.cache_dir or Path(tmp))
            if args.skip != "clips":
                rows += clip_sweep(bench, sizes)
            if args.skip != "budget" and name in BUDGETS:
                rows += budget_sweep(bench, BUDGETS[name][1 if args.tiny else 0], budget_clips)
            elif args.skip != "budget":
                print(f"{name:<14} no budget sweep (budgets are swept for {', '.join(BUDGETS)})")
    for r in rows:
        r["data"] = source
    return finish(rows, args.json)


if __name__ == "__main__":
    main()
