"""PEFT vs probes on a frozen speech encoder, on the real gibbon recordings.

For each task (gibbon-caller-id: stratified 5-fold; danum-gibbon: one recorder-grouped train/val/test split)
it prints and appends to a JSON-lines file one row per (method, fold): balanced accuracy on the test part,
trainable parameters, seconds per epoch. Methods:

* ``linear_probe``: logistic regression on the mean-pooled last hidden state (features cached once);
* ``per_layer_probe``: the same on every hidden state; reports the layer with the best VALIDATION score;
* ``weighted_sum_probe``: SUPERB softmax layer weights + linear map on the cached per-layer features;
* ``lora_r4``, ``lora_r8`` (q, v of every layer), ``prompt_p{a,b}`` / ``deep_prompt_p{a,b}`` (two prompt lengths),
  ``adaption``: trained end to end through the shared loop (:func:`reprogram.experiment.train.train`) with a linear head
  on the mean-pooled last layer. The head starts from the validation-selected logistic probe (LP-FT,
  Kumar et al. 2022), so a few CPU epochs compare the methods rather than the head's convergence.

Every choice (C of the probes, best epoch, best layer) is made on the validation part; test is only scored.
Clips are centre-cropped (evaluation, features) or randomly cropped (training) to ``--clip-seconds``.
Datasets absent from ``--data-root`` are skipped with a message.

Run: ``python benchmarks/peft_speech.py --out /tmp/peft_speech.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import backbones  # noqa: E402
from reprogram.data.dataset import WaveformDataset  # noqa: E402
from reprogram.data.loaders import load_table  # noqa: E402
from reprogram.data.splits import Split, grouped_split, stratified_kfold  # noqa: E402
from reprogram.experiment.config import TrainingConfig  # noqa: E402
from reprogram.experiment.train import evaluate, train  # noqa: E402
from reprogram.mappers.heads import LinearHead, SpeechClassifier  # noqa: E402
from reprogram.methods.probes import fit_linear_probe, per_layer_probes, pooled_features, train_weighted_sum_probe  # noqa: E402
from reprogram.peft import apply  # noqa: E402

TASKS = {
    # name: (folder, label column, group column, split kind)
    "caller_id": ("gibbon-caller-id", "individual", "site", "stratified_5fold"),
    "danum": ("danum-gibbon", "label", "recorder", "recorder_grouped"),
}

#: trainable methods: name -> (registry method, options, learning rate)
METHODS = {
    "lora_r4": ("lora", {"r": 4, "alpha": 8.0}, 1e-3),
    "lora_r8": ("lora", {"r": 8, "alpha": 16.0}, 1e-3),
    "prompt_p4": ("prompt", {"length": 4}, 3e-3),
    "prompt_p16": ("prompt", {"length": 16}, 3e-3),
    "deep_prompt_p4": ("deep_prompt", {"length": 4}, 3e-3),
    "deep_prompt_p16": ("deep_prompt", {"length": 16}, 3e-3),
    "adaption": ("adaption", {"length": 10}, 3e-3),
    "finetune": ("finetune", {}, 1e-4),  # the upper reference; not in the default list (CPU budget)
}
PROBES = ("linear_probe", "per_layer_probe", "weighted_sum_probe")
DEFAULT_METHODS = [*PROBES, *(m for m in METHODS if m != "finetune")]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="offline:whisper_tiny_en")
    p.add_argument("--data-root", default=os.environ.get("REPROGRAM_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    p.add_argument("--methods", nargs="+", default=DEFAULT_METHODS, choices=list(PROBES) + list(METHODS))
    p.add_argument("--folds", type=int, nargs="+", default=None,
                   help="1-based folds of caller_id on which to train the PEFT methods (default: all; probes: all)")
    p.add_argument("--clip-seconds", type=float, default=5.0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-train-per-class", type=int, default=None,
                   help="cap the training clips per class for the PEFT methods (CPU budget); probes use all")
    p.add_argument("--max-val-per-class", type=int, default=None, help="cap the validation clips per class (PEFT)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default=None, help="JSON-lines file to append the rows to")
    p.add_argument("--summarize", nargs="+", default=None, metavar="JSONL",
                   help="only print the per-method summary table of earlier runs' JSON-lines files")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.clip_seconds <= 0:
        p.error("--epochs must be >= 1 and --clip-seconds positive")
    return args


def cap_per_class(indices: list[int], targets: list[int], cap: int | None, seed: int) -> list[int]:
    """At most ``cap`` rows of every class (random, seeded), in original order."""
    if cap is None:
        return list(indices)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for c in sorted({targets[i] for i in indices}):
        rows = [i for i in indices if targets[i] == c]
        keep.extend(rng.permutation(rows)[:cap].tolist() if len(rows) > cap else rows)
    return sorted(keep)


def splits_for(task: str, table, seed: int) -> list[Split]:
    kind = TASKS[task][3]
    if kind == "stratified_5fold":
        return stratified_kfold(table, k=5, seed=seed)
    return [grouped_split(table, TASKS[task][2], fractions=(0.6, 0.2, 0.2), seed=seed)]


def emit(row: dict, out: str | None) -> None:
    """Print a row and append it to ``out``."""
    shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "detail"}
    print(json.dumps(shown), flush=True)
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")


def warm_start(head: LinearHead, probe) -> None:
    """Copy a fitted scaler + logistic-regression pipeline into ``head`` (same logits ordering)."""
    scaler, lr = probe.model[0], probe.model[-1]
    coef = lr.coef_ / scaler.scale_[None, :]  # (K', D): the scaler folded into the weights
    bias = lr.intercept_ - (lr.coef_ * (scaler.mean_ / scaler.scale_)[None, :]).sum(1)  # (K',)
    if coef.shape[0] == 1:  # binary: logit of class 1; split it symmetrically over two outputs
        coef, bias = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-bias / 2, bias / 2])
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.fill_(-10.0)  # classes absent from the training part start unlikely
        rows = torch.as_tensor(lr.classes_, dtype=torch.long)
        head.linear.weight[rows] = torch.as_tensor(coef, dtype=torch.float32)
        head.linear.bias[rows] = torch.as_tensor(bias, dtype=torch.float32)


def run_probes(task, split, fold, feats, targets, args) -> dict:
    """Linear, per-layer and weighted-sum probes on cached features; returns the linear probe (for LP-FT)."""
    base = {"task": task, "fold": fold, "split": split.name, "backbone": args.backbone}
    t0 = time.perf_counter()
    probe = fit_linear_probe(feats[:, -1], targets, split.train, split.val, split.test, seed=args.seed)
    if "linear_probe" in args.methods:
        emit({**base, "method": "linear_probe", "test_bacc": probe.test_balanced_accuracy,
              "val_bacc": probe.val_balanced_accuracy, "trainable": probe.trainable_parameters,
              "sec_per_epoch": time.perf_counter() - t0, "detail": {"C": probe.C}}, args.out)
    if "per_layer_probe" in args.methods:
        t0 = time.perf_counter()
        report = per_layer_probes(feats, targets, split.train, split.val, split.test)
        best = report.results[report.best_layer]
        emit({**base, "method": "per_layer_probe", "best_layer": report.best_layer,
              "test_bacc": best.test_balanced_accuracy, "val_bacc": best.val_balanced_accuracy,
              "trainable": best.trainable_parameters, "sec_per_epoch": time.perf_counter() - t0,
              "val_by_layer": [round(r.val_balanced_accuracy, 3) for r in report.results],
              "test_by_layer": [round(r.test_balanced_accuracy, 3) for r in report.results]}, args.out)
    if "weighted_sum_probe" in args.methods:
        t0 = time.perf_counter()
        ws = train_weighted_sum_probe(feats, targets, split.train, split.val, split.test, seed=args.seed)
        emit({**base, "method": "weighted_sum_probe", "test_bacc": ws.test_balanced_accuracy,
              "val_bacc": ws.val_balanced_accuracy, "trainable": ws.trainable_parameters,
              "sec_per_epoch": (time.perf_counter() - t0) / 200,
              "layer_weights": [round(w, 3) for w in ws.layer_weights]}, args.out)
    return probe


def run_method(name, task, split, fold, table, targets, probe, cache, args) -> None:
    method, options, lr = METHODS[name]
    torch.manual_seed(args.seed)
    backbone = backbones.create(args.backbone)
    sr = backbone.spec.sample_rate
    train_rows = cap_per_class(split.train, targets, args.max_train_per_class, args.seed)
    val_rows = cap_per_class(split.val, targets, args.max_val_per_class, args.seed)

    def data(rows, crop):
        return WaveformDataset(table.subset(rows), sr, args.clip_seconds, crop=crop, classes=table.classes,
                               seed=args.seed, cache=cache)

    with torch.no_grad():  # the unprompted model's frames, for prompt initialisation
        init = backbone(torch.stack([data(train_rows, "center")[i][0] for i in range(min(8, len(train_rows)))]))
    handle = apply(backbone, method, **options)
    if hasattr(handle, "init_from_frames"):
        handle.init_from_frames(init.hidden_states, init.mask, seed=args.seed)
    method_params = backbone.num_parameters(trainable_only=True)
    head = LinearHead(backbone.hidden_size, len(table.classes))
    warm_start(head, probe)
    model = SpeechClassifier(backbone, head)
    config = TrainingConfig(epochs=args.epochs, batch_size=args.batch_size, lr=lr, patience=None,
                            balanced_loss=True, warmup_fraction=0.1)
    result = train(model, data(train_rows, "random"), data(val_rows, "center"), table.classes, config,
                   seed=args.seed, progress=False)
    test_loader = DataLoader(data(split.test, "center"), batch_size=args.batch_size)
    test = evaluate(model, test_loader, table.classes)
    emit({"task": task, "fold": fold, "split": split.name, "backbone": args.backbone, "method": name,
          "test_bacc": test["balanced_accuracy"], "val_bacc": result.best_val["balanced_accuracy"],
          "trainable": method_params, "trainable_with_head": method_params + head.trainable_parameters(),
          "sec_per_epoch": float(np.mean([h["seconds"] for h in result.history])), "best_epoch": result.best_epoch,
          "n_train": len(train_rows), "n_val": len(val_rows), "n_test": len(split.test), "epochs": args.epochs,
          "lr": lr}, args.out)


def summarize(rows: list[dict]) -> str:
    """Markdown table: per task and method, mean +- std of test balanced accuracy over folds, parameters, s/epoch."""
    lines = ["| task | method | test bal. acc. (mean +- sd) | folds | trainable (method) | s/epoch | best layer |",
             "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["task"], r["method"]) for r in rows}, key=lambda k: (k[0], _order(k[1])))
    for task, method in keys:
        sel = [r for r in rows if r["task"] == task and r["method"] == method]
        acc = np.array([r["test_bacc"] for r in sel], dtype=float)
        layers = ",".join(str(r["best_layer"]) for r in sel if "best_layer" in r)
        lines.append(f"| {task} | {method} | {acc.mean():.3f} +- {acc.std(ddof=1) if len(acc) > 1 else 0:.3f} | "
                     f"{len(sel)} | {sel[0]['trainable']} | {np.mean([r['sec_per_epoch'] for r in sel]):.1f} | "
                     f"{layers or '-'} |")
    return "\n".join(lines)


def _order(method: str) -> int:
    names = [*PROBES, *METHODS]
    return names.index(method) if method in names else len(names)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.summarize:
        rows = [json.loads(line) for path in args.summarize for line in Path(path).read_text().splitlines() if line]
        print(summarize(rows))
        return 0
    rows_before = len(Path(args.out).read_text().splitlines()) if args.out and Path(args.out).is_file() else 0
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# peft_speech: {vars(args)}", flush=True)
    trainable = [m for m in args.methods if m in METHODS]
    for task in args.tasks:
        folder = Path(args.data_root) / TASKS[task][0]
        if not (folder / "manifest.csv").is_file():
            print(f"# skip {task}: {folder / 'manifest.csv'} not found (set --data-root or REPROGRAM_SHARED_DATA)")
            continue
        table = load_table(folder, label_column=TASKS[task][1], group_columns=(TASKS[task][2],))
        targets = table.targets()
        splits = splits_for(task, table, args.seed)
        backbone = backbones.create(args.backbone)
        cache: dict = {}
        t0 = time.perf_counter()
        feats = pooled_features(backbone, WaveformDataset(table, backbone.spec.sample_rate, args.clip_seconds,
                                                          crop="center", cache=cache), args.batch_size)  # (M, L, D)
        print(f"# {task}: {len(table)} clips, {len(table.classes)} classes, features {tuple(feats.shape)} in "
              f"{time.perf_counter() - t0:.1f} s (computed once, shared by every probe and fold)", flush=True)
        probes = [run_probes(task, s, i + 1, feats, targets, args) for i, s in enumerate(splits)]
        folds = args.folds or list(range(1, len(splits) + 1))
        for name in trainable:
            for fold in folds:
                if fold > len(splits):
                    continue
                run_method(name, task, splits[fold - 1], fold, table, targets, probes[fold - 1], cache, args)
    if args.out and Path(args.out).is_file():
        rows = [json.loads(line) for line in Path(args.out).read_text().splitlines()[rows_before:] if line]
        if rows:
            print(summarize(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
