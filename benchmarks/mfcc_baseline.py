"""Balanced accuracy of the MFCC baseline (logistic regression, random forest) on every gibbon task we have.

Real recordings (skipped where ``--data-dir`` lacks them):
  * danum-gibbon, 5 classes, leave-one-recorder-out (7 folds);
  * gibbon-caller-id, 12 individuals, stratified 5-fold, repeated over ``--seeds``.
Synthetic corpus (generated once into the cache):
  * call type (4 classes) and presence (2 classes), leave-one-recorder-out;
  * caller ID (8 females), stratified 5-fold, repeated over ``--seeds``.

The baseline has fixed hyperparameters, so each fold trains on everything outside its test part (no
validation part is needed). Each line gives the mean balanced accuracy over folds (and seeds) +- its standard
deviation [range] with the mean per-fold chance (1 / classes present in the test fold), then the balanced accuracy
of all out-of-fold predictions pooled (mean over seeds) with its chance (1 / classes), which is the fairer
summary when folds are unequal (leave-one-recorder-out), then accuracy and macro-F1 (fold means).

Usage: python benchmarks/mfcc_baseline.py [--data-dir ../shared/data] [--seeds 0,1,2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reprogram.data.loaders import load_table
from reprogram.data.records import ClipTable
from reprogram.data.splits import leave_one_group_out, stratified_kfold
from reprogram.data.synthetic import SYNTHETIC_TASKS, SyntheticConfig, ensure_corpus, task_manifest
from reprogram.methods.mfcc import CLASSIFIERS, evaluate_mfcc_baseline, table_features

ROOT = Path(__file__).resolve().parents[1]


def _default_data_dir() -> Path:
    return Path(os.environ.get("REPROGRAM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _evaluate(
    name: str, table: ClipTable, protocol: str, seeds: Sequence[int], classifiers: Sequence[str]
) -> list[dict]:
    """Featurise ``table`` once, then score every classifier on the protocol's folds; prints one line each."""
    start = time.perf_counter()
    features = table_features(table, 16000)
    feat_s = time.perf_counter() - start
    if protocol == "stratified":
        fold_sets = [(s, stratified_kfold(table, k=5, seed=s, val=False)) for s in seeds]
        tag = f"stratified 5-fold x {len(seeds)} seed(s)"
    else:
        fold_sets = [(s, leave_one_group_out(table, protocol, val_fraction=0.0)) for s in seeds[:1]]
        tag = f"leave-one-{protocol}-out ({len(fold_sets[0][1])} folds)"
    rows = []
    for classifier in classifiers:
        results = [
            evaluate_mfcc_baseline(features, table.labels, splits, classifier, seed=s) for s, splits in fold_sets
        ]
        folds = [f for r in results for f in r["folds"]]
        bal = np.array([f["balanced_accuracy"] for f in folds])
        row = {
            "dataset": name,
            "protocol": tag,
            "classifier": classifier,
            "n_clips": len(table),
            "n_classes": len(table.classes),
            "balanced_accuracy_mean": float(bal.mean()),
            "balanced_accuracy_std": float(bal.std()),
            "balanced_accuracy_min": float(bal.min()),
            "balanced_accuracy_max": float(bal.max()),
            "accuracy_mean": float(np.mean([f["accuracy"] for f in folds])),
            "macro_f1_mean": float(np.mean([f["macro_f1"] for f in folds])),
            "chance": float(np.mean([f["chance_balanced_accuracy"] for f in folds])),
            "pooled_balanced_accuracy": float(np.mean([r["pooled"]["balanced_accuracy"] for r in results])),
            "pooled_chance": results[0]["pooled"]["chance_balanced_accuracy"],
            "n_folds": len(folds),
            "feature_seconds": round(feat_s, 2),
        }
        rows.append(row)
        print(
            f"{name:28s} {classifier:14s} bal.acc {row['balanced_accuracy_mean']:.3f} "
            f"± {row['balanced_accuracy_std']:.3f} "
            f"[{row['balanced_accuracy_min']:.2f}-{row['balanced_accuracy_max']:.2f}]"
            f" chance {row['chance']:.3f}"
            f" | pooled {row['pooled_balanced_accuracy']:.3f} chance {row['pooled_chance']:.3f}"
            f" | acc {row['accuracy_mean']:.3f} macro-F1 {row['macro_f1_mean']:.3f}"
            f"  (n={len(table)}, {len(table.classes)} classes, {tag})",
            flush=True,
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=_default_data_dir(), help="folder with the real datasets")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds for stratified folds and forests")
    parser.add_argument("--classifiers", default=",".join(CLASSIFIERS), help=f"subset of {CLASSIFIERS}")
    parser.add_argument("--synthetic-seed", type=int, default=0, help="seed of the synthetic corpus")
    parser.add_argument(
        "--synthetic",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a SyntheticConfig field (repeatable; values parsed as JSON, e.g. snr_db=6 or "
        "male_f_hz=[250,480])",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help="synthetic corpus cache (default: user cache)")
    parser.add_argument("--skip-real", action="store_true", help="only the synthetic corpus")
    parser.add_argument("--json", type=Path, default=None, help="also write all rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r}: give comma-separated integers such as 0,1,2")
    classifiers = [c for c in args.classifiers.split(",") if c]
    unknown = sorted(set(classifiers) - set(CLASSIFIERS))
    if unknown or not seeds:
        parser.error(f"--classifiers {unknown} unknown (use {CLASSIFIERS}) or --seeds empty")

    rows: list[dict] = []
    real = [
        ("danum-gibbon", "label", "recorder"),
        ("gibbon-caller-id", "individual", "stratified"),
    ]
    for folder, label, protocol in [] if args.skip_real else real:
        manifest = args.data_dir / folder / "manifest.csv"
        if not manifest.is_file():
            print(f"{folder:28s} skipped: {manifest} not found (set --data-dir or REPROGRAM_SHARED_DATA)")
            continue
        groups = ("recorder",) if protocol == "recorder" else ()
        table = load_table(manifest, label_column=label, group_columns=groups)
        rows += _evaluate(folder, table, protocol, seeds, classifiers)

    overrides: dict = {"seed": args.synthetic_seed}
    for item in args.synthetic:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--synthetic {item!r}: write KEY=VALUE, e.g. --synthetic snr_db=6")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    try:
        config = SyntheticConfig.from_dict(overrides)
    except (KeyError, ValueError, TypeError) as err:
        parser.error(f"--synthetic: {err}")
    start = time.perf_counter()
    manifest = ensure_corpus(config, cache_dir=args.cache_dir)
    print(f"synthetic corpus {manifest.parent} (seed {config.seed}, ready in {time.perf_counter() - start:.1f} s)")
    for name, task in SYNTHETIC_TASKS.items():
        table = load_table(
            task_manifest(manifest, name), label_column=task.label_column, group_columns=task.group_columns
        )
        protocol = "stratified" if task.protocol == "stratified" else task.group_columns[0]
        rows += _evaluate(f"synthetic/{name}", table, protocol, seeds, classifiers)

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"synthetic_config": config.to_dict(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
