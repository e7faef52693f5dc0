"""``reprogram run CONFIG [--set k=v ...] --out DIR [--test-data PATH] [--cache-dir D | --no-cache]``: one experiment,
one result file.

A run resolves its config, loads the data and its split, builds the method through ``METHODS``, trains it
with the one training loop (feature methods: fits a classifier on features computed once), selects on
validation, evaluates on train / val / test
(and ``external`` with ``--test-data``) and writes ``DIR/runs/<run id>/result.json`` atomically, next to
``config.yaml``, ``trainable.safetensors`` (selected trainable state), ``checkpoint/`` (per-epoch state to
resume from) and, for programs, ``program.safetensors`` (an example input before and after training).
A completed run is skipped (after checking that its data, fingerprinted in the result, are unchanged: else it
raises with the fix); an interrupted one resumes from its last checkpoint. Under ``torchrun`` the ranks train
data-parallel and rank 0 writes and evaluates. Frozen work (decoded clips,
features of probes and MFCC) comes from the disk cache of :mod:`reprogram.runtime.cache`, shared by every run; methods
that
train only above a frozen point (prompts, LoRA on the top layers, weighted / attentive probes) train on the cached
activations below it (:mod:`reprogram.runtime.prefix`; ``result.json`` ``prefix_cache`` says whether and where).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.utils.data import DataLoader

from reprogram.data.records import ClipTable
from reprogram.experiment.config import ConfigError, ExperimentConfig, load_config, run_id, save_config, to_dict
from reprogram.experiment.fingerprint import check_unchanged, data_fingerprint
from reprogram.experiment.metrics import classification_metrics
from reprogram.experiment.results import (
    SCHEMA_VERSION,
    environment,
    existing_result,
    measure,
    run_dir,
    utc_now,
    write_result,
)
from reprogram.experiment.train import count_parameters, predict, seed_everything, train
from reprogram.methods.features import clip_ids as _clip_ids
from reprogram.methods.features import fit_features as _fit_features
from reprogram.runtime.cache.store import cache_root

#: synthetic task chosen from the label column when ``data.path`` is ``synthetic`` (or unset)
SYNTHETIC_BY_LABEL = {"call_type": "call_type", "individual": "caller_id", "presence": "presence"}


# --------------------------------------------------------------------------------------------------
# data


def load_data(path: str | None, config: ExperimentConfig) -> ClipTable:
    """The clip table of ``path`` with the task's label and group columns.

    ``None`` / ``"synthetic"`` / ``"synthetic:<task>"`` is the embedded synthetic corpus (generated once and
    cached); its task defaults to the one whose label column is ``task.label_column``.
    """
    from reprogram.data.loaders import load_table

    task = config.task
    groups = [task.group_column] if task.group_column else []
    if path is None or path == "synthetic" or path.startswith("synthetic:"):
        from reprogram.data.synthetic import SYNTHETIC_TASKS, SyntheticConfig, ensure_corpus, task_manifest

        name = path.split(":", 1)[1] if path and ":" in path else SYNTHETIC_BY_LABEL.get(task.label_column)
        if name not in SYNTHETIC_TASKS:
            raise ValueError(
                f"no synthetic task for label column {task.label_column!r} (data.path={path!r}); use "
                f"data.path=synthetic:<task> with a task of {sorted(SYNTHETIC_TASKS)}"
            )
        manifest = ensure_corpus(SyntheticConfig(**config.data.synthetic))
        return load_table(task_manifest(manifest, name), label_column=task.label_column, group_columns=groups)
    d = config.data
    return load_table(
        path, label_column=task.label_column, group_columns=groups, path_column=d.path_column,
        start_column=d.start_column, end_column=d.end_column, format=d.format, on_error=d.on_error, **d.options,
    )


def make_split(table: ClipTable, config: ExperimentConfig):
    """The train/val/test split of ``table`` that ``config.split`` describes (a ``reprogram.data.splits.Split``)."""
    from reprogram.data import splits

    s, group = config.split, config.task.group_column
    if s.kind in ("grouped", "group_kfold", "logo") and group is None:
        raise ValueError(
            f"split.kind={s.kind!r} needs task.group_column; set it (e.g. recorder) or use split.kind=kfold"
        )
    if s.kind == "grouped":
        train_f = 1 - s.val_fraction - s.test_fraction
        return splits.grouped_split(table, group, (train_f, s.val_fraction, s.test_fraction), seed=s.seed)
    if s.kind == "kfold" and group is not None:
        raise ConfigError(
            f"split.kind=kfold ignores groups, so one {group} could be in train and test while "
            f"task.group_column={group!r} is set; use split.kind=group_kfold (or logo) to keep each {group} in one "
            "part, or set task.group_column=null if the clips truly are independent"
        )
    if s.kind == "kfold":
        folds = splits.stratified_kfold(table, k=s.n_folds, seed=s.seed)
    elif s.kind == "group_kfold":
        folds = splits.grouped_kfold(table, group, k=s.n_folds, seed=s.seed)
    else:
        folds = splits.leave_one_group_out(table, group, val_fraction=s.val_fraction, seed=s.seed)
    if s.fold >= len(folds):
        raise ValueError(f"split.fold={s.fold} but this {s.kind} split has {len(folds)} folds; use 0..{len(folds) - 1}")
    return folds[s.fold]


def _dataset(table: ClipTable, rate: int, config: ExperimentConfig, classes, crop: str, cache: dict):
    from reprogram.data.dataset import WaveformDataset

    return WaveformDataset(
        table, rate, config.data.clip_seconds, crop=crop, classes=classes, seed=config.seed, cache=cache
    )


def _waveforms(table: ClipTable, rate: int, cache_dir: Path | None) -> MutableMapping:
    """The decoded clips of ``table`` at ``rate``: memory-mapped from the disk cache (decoded once, ever), or,
    without a cache folder, an empty dict the datasets fill as they decode."""
    if cache_dir is None:
        return {}
    from reprogram.runtime.cache import cached_waveforms

    return cached_waveforms(table, rate, cache_dir)


def _external_table(config: ExperimentConfig, classes: list[str]) -> ClipTable:
    table = load_data(config.data.test_path, config)
    unseen = sorted({r.label for r in table} - set(classes))
    if unseen:
        raise ValueError(
            f"external test set {config.data.test_path} has labels {unseen} that the training data "
            f"({classes}) lacks; relabel or drop those rows"
        )
    return table


# --------------------------------------------------------------------------------------------------
# running


def run_experiment(
    config: ExperimentConfig,
    out_dir: str | Path,
    progress: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
    prefix_cache: bool = True,
) -> dict | None:
    """Run ``config`` unless ``DIR/runs/<run id>/result.json`` exists; return its result.

    Frozen work is cached on disk (content-addressed, :mod:`reprogram.runtime.cache`) and shared by every run, seed
    and fold: the table's clips decoded and resampled once per rate (memory-mapped), and the features of
    feature methods (probes, MFCC) computed once per table, backbone weights and options. The cache is a
    runtime choice, not part of the config, so it never changes a run id or a result.

    Args:
        config: the fully resolved experiment config.
        out_dir: the results folder (``DIR``).
        progress: show tqdm progress (``None``: only on a terminal).
        cache_dir: the cache folder (``None``: ``$REPROGRAM_CACHE`` or ``~/.cache/gibbon-reprogram``).
        use_cache: ``False`` keeps everything in memory for this run only (nothing written to the cache).
        prefix_cache: methods that train above a frozen prefix (prompts, LoRA on the top layers, probes) train
            on its activations computed once (:mod:`reprogram.runtime.prefix`); ``False`` runs the frozen part every
            step
            (same metrics; for timing the saving).

    Under ``torchrun`` every rank trains its shard of each global batch (:mod:`reprogram.runtime.distributed`); rank 0
    alone writes ``config.yaml``, the safetensors and ``result.json`` and evaluates, and the other ranks return
    ``None``.

    Raises:
        reprogram.experiment.results.CorruptResultError: a result file exists for this run but cannot be read (it is
            never overwritten).
    """
    rid = run_id(config)
    provenance = environment()  # the code as this run starts: a checkout changing mid-run must not relabel it
    from reprogram.methods import NO_BACKBONE, build
    from reprogram.runtime import distributed

    # under torchrun every rank trains its shard; rank 0 alone writes files and evaluates (the others wait at the
    # session's closing barrier); a plain process is rank 0 of a world of 1
    with distributed.session(config.training.device) as env, measure(config.training.device) as usage:
        seed_everything(config.seed)
        # the data are read and checked before anything is written, so a bad path leaves no empty run folder
        table = load_data(config.data.path, config)
        external = _external_table(config, table.classes) if config.data.test_path else None
        fingerprint = data_fingerprint(table, external)
        done = existing_result(out_dir, rid)
        if done is not None:
            check_unchanged(done, fingerprint, config, out_dir)
            return done
        split = make_split(table, config)
        classes = table.classes
        positive = _positive(config, classes)
        built = build(config, classes)
        if built.model is None and not env.is_main:
            return None  # feature methods have nothing to train in parallel: rank 0 computes and fits alone
        folder = run_dir(out_dir, rid)
        if env.is_main:
            folder.mkdir(parents=True, exist_ok=True)
            save_config(config, folder / "config.yaml")
        disk = cache_root(cache_dir) if use_cache else None
        rows = {name: list(idx) for name, idx in split.parts().items() if idx}
        parts = {name: table.subset(idx) for name, idx in rows.items()}
        packed = _waveforms(table, built.sample_rate, disk)  # every clip of the table, shared by every part
        caches = {name: packed for name in parts}
        if external is not None:
            parts["external"] = external
            caches["external"] = _waveforms(external, built.sample_rate, disk)
        eval_sets = {
            n: _dataset(t, built.sample_rate, config, classes, "center", caches[n]) for n, t in parts.items()
        }
        full = _dataset(table, built.sample_rate, config, classes, "center", caches["train"])
        if built.model is not None:
            sources = (full, rows, eval_sets.get("external"), disk, env.enabled) if prefix_cache else None
            fitted = _train_model(
                config, built, parts["train"], eval_sets, classes, positive, folder, progress, caches["train"],
                env.is_main, sources,
            )
        else:
            ext = {"external": eval_sets["external"]} if "external" in eval_sets else {}
            fitted = _fit_features(built, full, rows, ext, classes, positive, disk)
    if not env.is_main:
        return None
    result = {
        "schema": SCHEMA_VERSION,
        "run_id": rid,
        "name": config.name,
        "method": config.method.name,
        "budget": config.method.budget,
        "backbone": None if config.method.name in NO_BACKBONE else config.backbone.name,
        "modality": built.modality,
        "task": config.task.label_column,
        "detection": config.task.detection,
        "seed": config.seed,
        "fold": config.split.fold,
        "classes": classes,
        "sample_rate": built.sample_rate,
        "split": {"name": split.name, "sizes": {n: len(t) for n, t in parts.items()}, "groups": dict(split.meta)},
        "data_fingerprint": fingerprint,
        "config": to_dict(config),
        **fitted,
        "wall_time_s": usage["wall_time_s"],
        "peak_memory_mb": usage["peak_memory_mb"],
        "environment": provenance,
        "created": utc_now(),
    }
    write_result(out_dir, result)
    return result


def _positive(config: ExperimentConfig, classes: list[str]) -> int | None:
    if not config.task.detection:
        return None
    if config.task.positive_label not in classes:
        raise ValueError(
            f"task.positive_label={config.task.positive_label!r} is not a class of the data "
            f"({classes}); set it to one of them"
        )
    return classes.index(config.task.positive_label)


def _train_model(
    config, built, train_table, eval_sets, classes, positive, folder: Path, progress, cache, is_main: bool = True,
    sources: tuple | None = None,
) -> dict | None:
    """Train (every rank under torchrun), then on rank 0 only save the trainable state and program renders and
    evaluate every part; other ranks return ``None``.

    ``sources`` = ``(full center-crop dataset, part rows, external dataset or None, cache folder, distributed)``
    lets a method that trains above a frozen prefix train on its cached activations (:mod:`reprogram.runtime.prefix`).
    """
    from reprogram.runtime.prefix import Prefixed, prepare_prefix

    model = built.model
    train_set = _dataset(train_table, built.sample_rate, config, classes, "random", cache)
    if built.prepare is not None:  # e.g. prompts from real frames of the first training clips (center crops)
        built.prepare(eval_sets["train"])
    example = eval_sets.get("val", train_set)[0][0][None]  # (1, N)
    program = _program(model)
    before = _render(program, example) if program is not None else None
    ckpt = folder / "checkpoint" if config.output.checkpoint else None
    from reprogram.runtime.accel import AccelConfig

    t = config.training
    accel = AccelConfig.from_training(t).enabled
    if sources is None:
        prefixed = Prefixed(None, record={"used": False, "reason": "turned off (--no-prefix-cache)"})
    else:
        prefixed = prepare_prefix(built, train_set, *sources[:4], accel=accel, distributed=sources[4],
                                  batch_size=t.batch_size)
    if prefixed.model is not None:  # the same modules, trained on cached activations below the cut
        model, train_set, eval_sets = prefixed.model, prefixed.train, prefixed.evals
    outcome = train(
        model,
        train_set,
        eval_sets["val"],
        classes,
        config.training,
        seed=config.seed,
        checkpoint_dir=ckpt,
        positive=positive,
        progress=progress,
    )
    if not is_main:
        return None
    save_file(outcome.state, str(folder / "trainable.safetensors"), metadata={"best_epoch": str(outcome.best_epoch)})
    if program is not None:
        after = _render(program, example)
        save_file(
            {"wave": example[0].contiguous(), **{f"{k}_init": v for k, v in before.items()}, **after},
            str(folder / "program.safetensors"),
        )
    metrics, predictions = {}, {}
    for name, ds in eval_sets.items():
        loader = DataLoader(ds, batch_size=config.training.batch_size, num_workers=config.training.num_workers)
        y, scores = predict(model, loader, config.training.device)
        metrics[name] = classification_metrics(y, scores, classes, positive)
        predictions[name] = {"target": y.tolist(), "scores": np.round(scores, 6).tolist(), "ids": _clip_ids(ds.table)}
    trainable, total = count_parameters(built.model)
    components = built.model.budget() if hasattr(built.model, "budget") else built.components  # trained norms
    return {
        "params": {"trainable": trainable, "total": total, "components": components},
        "metrics": metrics,
        "training": {
            "best_epoch": outcome.best_epoch,
            "epochs_run": outcome.epochs_run,
            "stopped_early": outcome.stopped_early,
            "resumed_from": outcome.resumed_from,
            "history": outcome.history,
        },
        "label_mapping": _label_mapping(model, classes, built.label_names),
        "predictions": predictions if config.output.predictions else None,
        "prefix_cache": prefixed.record or None,
    }


def _program(model) -> torch.nn.Module | None:
    from reprogram.transforms.base import InputTransform

    for attr in ("transform", "program"):
        candidate = getattr(model, attr, None)
        if isinstance(candidate, InputTransform):
            return candidate
    return None


@torch.no_grad()
def _render(program, example: torch.Tensor) -> dict[str, torch.Tensor]:
    """The program's output (and inner spectrogram image, where it has one) on one example ``(1, N)``."""
    was = program.training
    program.eval()
    device = next((p.device for p in program.parameters()), torch.device("cpu"))
    out = {"input": program(example.to(device))[0].float().cpu().contiguous()}  # (*spec.shape)
    if hasattr(program, "inner"):
        out["inner"] = program.inner(example.to(device))[0].float().cpu().contiguous()  # (C, h, w)
    program.train(was)
    return out


def _label_mapping(model, classes: list[str], label_names: tuple[str, ...], top: int = 3) -> dict | None:
    """Target class x source label weights of a mapper reading source logits (for label-mapping figures)."""
    mapper = getattr(model, "mapper", None)
    if mapper is None or getattr(mapper, "input_kind", "logits") != "logits" or not label_names:
        return None
    if hasattr(mapper, "assignment"):
        assignment = mapper.assignment.cpu()  # (K, m)
        sources = sorted({int(j) for j in assignment.flatten() if j >= 0})
        matrix = [[1.0 if j in set(row.tolist()) else 0.0 for j in sources] for row in assignment]
    elif hasattr(mapper, "linear"):
        weight = mapper.linear.weight.detach().cpu()  # (K, S)
        sources = sorted({int(j) for row in weight for j in row.topk(min(top, weight.shape[1])).indices})
        matrix = weight[:, sources].tolist()
    else:
        return None
    return {
        "kind": type(mapper).__name__,
        "targets": list(classes),
        "sources": [label_names[j] for j in sources],
        "source_index": sources,
        "matrix": matrix,
    }


# --------------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reprogram run``."""
    parser.add_argument("config", help="experiment YAML (see experiments/configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set training.lr=3e-4 (repeatable)",
    )
    parser.add_argument("--out", required=True, help="results folder; the run writes DIR/runs/<run id>/")
    parser.add_argument(
        "--test-data",
        default=None,
        metavar="PATH",
        help="external test set (train and select on the config's data, also report on this)",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress bars (default: only on a terminal)",
    )
    add_cache_arguments(parser)


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir DIR``, ``--no-cache`` and ``--no-prefix-cache`` (``reprogram run``, ``sweep`` and the suites)."""
    parser.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="cache of decoded clips and frozen features, shared by every run, seed and fold "
        "(default: $REPROGRAM_CACHE or ~/.cache/gibbon-reprogram; see `reprogram cache info`)",
    )
    parser.add_argument(
        "--cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-cache: decode and compute everything in memory, write nothing to the cache",
    )
    parser.add_argument(
        "--prefix-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--no-prefix-cache: run the frozen layers below a prompt / top-layer LoRA / probe every step "
        "instead of caching their activations (same metrics; to time the saving)",
    )


def resolve(config_path: str | None, overrides: Sequence[str], test_data: str | None = None) -> ExperimentConfig:
    """The full config of a command line: the YAML, then ``--set`` overrides, then ``--test-data``."""
    overrides = list(overrides) + ([f"data.test_path={test_data}"] if test_data else [])
    return load_config(config_path, overrides)


def summary(result: dict) -> str:
    """One line about a run, naming the split its score is on (test, or val when the split has no test part)."""
    part = "test" if "test" in result["metrics"] else "val"
    return (
        f"run {result['run_id']}: {result['method']} on {result['backbone'] or 'no backbone'} "
        f"{part} balanced accuracy {result['metrics'][part]['balanced_accuracy']:.3f} "
        f"({result['params']['trainable']} trainable parameters, {result['wall_time_s']:.1f} s)"
    )


def run(args: argparse.Namespace) -> int:
    """``reprogram run``: run one experiment and print where its result is."""
    config = resolve(args.config, args.overrides, args.test_data)
    result = run_experiment(config, args.out, progress=args.progress, cache_dir=args.cache_dir,
                            use_cache=args.cache, prefix_cache=args.prefix_cache)
    if result is None:  # a rank other than 0 under torchrun: rank 0 reports
        return 0
    print(summary(result))
    print(f"result: {run_dir(args.out, result['run_id']) / 'result.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reprogram run`` with ``argv``."""
    parser = argparse.ArgumentParser(prog="reprogram run")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
