"""Issue 7 (d): training above a cached frozen prefix vs running the prefix every step, through ``reprogram run``.

For each method that trains only above a point of the frozen ``offline:whisper_tiny_en`` encoder, two
``run_experiment`` calls of the same config and seed (``--epochs`` training epochs, no early stopping), each into
its own results folder:

1. ``prefix_cache=False``: the frozen lower part runs in every training and validation step;
2. ``prefix_cache=True`` with an empty prefix cache: the lower part runs once over every clip (one-off, inside
   the run's wall time), then every epoch trains and validates on the cached activations.

Reported per method: the median epoch seconds (``result.json`` ``training.history[*].seconds``: the training
steps plus the validation pass) of each run, the time saved ``1 - cached / uncached``, and the cached
part's share of a training step's FLOPs (``torch.utils.flop_counter.FlopCounterMode``: the lower part's forward
over the full step's forward + backward, on one training batch). Goal (issue 7): time saved >= that share. For
the frozen-feature heads (``weighted_probe``, ``attentive_probe``: the whole encoder is the prefix) the goal is
a cached / uncached epoch ratio <= 0.01. Test metrics of the two runs are printed: they agree up to float
summation order (same seed, same model, same data).

Methods: ``prompt`` (8 prompts, cut 0: above the conv stem), ``lora_top2`` / ``lora_top1`` (LoRA r=8 on q/v of the
top 2 / 1 of the 4 layers: cut 2 / 3), ``weighted_probe``, ``attentive_probe``.

Usage: python benchmarks/prefix_cache.py [--methods prompt,lora_top1] [--synthetic] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_models import ROOT, machine_line  # noqa: E402

sys.path.insert(0, str(ROOT))
from reprogram.experiment.config import load_config  # noqa: E402
from reprogram.experiment.runner import run_experiment  # noqa: E402

#: name -> config overrides of the method
METHODS = {
    "prompt": ["method.name=prompt", "method.budget=8"],
    "lora_top2": ["method.name=lora", "method.budget=8", "method.options.targets=[q,v]", "method.options.top_k=2"],
    "lora_top1": ["method.name=lora", "method.budget=8", "method.options.targets=[q,v]", "method.options.top_k=1"],
    "weighted_probe": ["method.name=weighted_probe"],
    "attentive_probe": ["method.name=attentive_probe"],
}
PROBES = ("weighted_probe", "attentive_probe")


def flop_share(config, kind: str, cut: int) -> tuple[float, float]:
    """``(lower-part forward GFLOP, full training step GFLOP)`` of ``config``'s model on one batch of noise of
    the configured clip length (FLOP counts do not depend on the values); ``kind`` and ``cut`` as the runner's
    ``result.json`` ``prefix_cache`` records them."""
    from backbones.split import split_backbone
    from reprogram.methods import build

    built = build(config, ["a", "b", "c", "d", "e"])
    model = built.model
    wave = torch.randn(config.training.batch_size, int(round(config.data.clip_seconds * built.sample_rate))) * 0.1
    with FlopCounterMode(display=False) as lower, torch.no_grad():  # wave: (B, N)
        if kind == "split":
            split_backbone(model.backbone, cut).lower(wave)
        else:  # the whole frozen encoder (pooled states or frames of one state)
            model.backbone(wave)
    model.train()
    with FlopCounterMode(display=False) as step:
        model(wave).sum().backward()
    return lower.get_total_flops() / 1e9, step.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> dict:
    """Run every method uncached and cached; print epoch times, time saved and the FLOP share."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {list(METHODS)}")
    parser.add_argument("--synthetic", action="store_true", help="synthetic corpus instead of danum-gibbon")
    parser.add_argument("--data-dir", type=Path,
                        default=Path(os.environ.get("REPROGRAM_SHARED_DATA", ROOT.parent / "shared" / "data")))
    parser.add_argument("--backbone", default="offline:whisper_tiny_en")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2, help="training epochs per run (median epoch reported)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="more config overrides (e.g. --set data.limit=...)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    names = [m for m in args.methods.split(",") if m]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    danum = args.data_dir / "danum-gibbon"
    if args.synthetic or not (danum / "manifest.csv").is_file():
        data = ["data.path=synthetic", "task.label_column=call_type"]
        source = "synthetic call-type corpus" + ("" if args.synthetic else f" (no recordings at {danum})")
    else:
        data = [f"data.path={danum}", "task.label_column=label", "task.group_column=recorder"]
        source = f"danum-gibbon ({danum})"
    base = [*data, f"backbone.name={args.backbone}", "data.clip_seconds=5.0", f"training.epochs={args.epochs}",
            "training.patience=null", f"training.batch_size={args.batch}", *args.overrides]
    print(machine_line())
    print(f"data: {source}; backbone {args.backbone}; batch {args.batch}; {args.epochs} epochs per run")
    work = Path(tempfile.mkdtemp(prefix="prefix-bench-"))
    rows = []
    try:
        warm = load_config(None, [*base, "method.name=mfcc"])
        run_experiment(warm, work / "warm", progress=False, cache_dir=work / "cache")  # decode the clips once
        for name in names:
            config = load_config(None, [*base, *METHODS[name]])
            runs = {cached: run_experiment(config, work / f"out-{cached}", progress=False, cache_dir=work / "cache",
                                           prefix_cache=cached) for cached in (False, True)}
            record = runs[True]["prefix_cache"]
            if not record.get("used"):
                raise RuntimeError(f"{name}: the cached run did not use the prefix cache: {record}")
            lower, step = flop_share(config, record["kind"], record["cut"])
            epoch = {c: float(np.median([h["seconds"] for h in r["training"]["history"]])) for c, r in runs.items()}
            row = {
                "method": name,
                "point": record["point"],
                "lower_gflop": round(lower, 2),
                "step_gflop": round(step, 2),
                "flop_share": round(lower / step, 4),
                "epoch_uncached_s": round(epoch[False], 2),
                "epoch_cached_s": round(epoch[True], 3),
                "ratio": round(epoch[True] / epoch[False], 4),
                "time_saved": round(1 - epoch[True] / epoch[False], 4),
                "run_uncached_s": round(runs[False]["wall_time_s"], 1),
                "run_cached_cold_s": round(runs[True]["wall_time_s"], 1),
                "test_bacc": [runs[c]["metrics"]["test"]["balanced_accuracy"] for c in (False, True)],
            }
            goal = "ratio <= 0.01" if name in PROBES else f"saved >= FLOP share {row['flop_share']:.3f}"
            met = row["ratio"] <= 0.01 if name in PROBES else row["time_saved"] >= row["flop_share"]
            row["goal"], row["met"] = goal, bool(met)
            rows.append(row)
            status = "met" if met else "NOT met"
            print(f"{name:16s} {row['point']:22s} FLOP share {row['flop_share']:.3f}  epoch "
                  f"{row['epoch_uncached_s']:7.2f} s -> {row['epoch_cached_s']:7.3f} s (x{row['ratio']:.4f}, "
                  f"saved {row['time_saved']:.3f}; goal {goal}: {status})  runs {row['run_uncached_s']} s / "
                  f"{row['run_cached_cold_s']} s cold  test bacc {row['test_bacc'][0]:.3f} / "
                  f"{row['test_bacc'][1]:.3f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(machine_line())
    result = {"data": source, "backbone": args.backbone, "batch": args.batch, "rows": rows}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
