"""A run's inputs: the clip table its config names, the split, the decoded clips and the datasets over them.

:func:`load_data` reads the table (or generates the embedded synthetic corpus), :func:`make_split` splits it as
``config.split`` says, :func:`waveforms` maps the decoded clips from the disk cache and :func:`make_dataset`
builds a ``WaveformDataset`` (fixed-length crops at the method's rate) over them. :func:`prepare` does all of
it for one run, after the method is built (the rate is the method's).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from reprogram.data.integrity import check_run_table, input_report, report_lines
from reprogram.data.records import ClipTable
from reprogram.experiment.config import ConfigError, ExperimentConfig

log = logging.getLogger(__name__)

#: synthetic task chosen from the label column when ``data.path`` is ``synthetic`` (or unset)
SYNTHETIC_BY_LABEL = {"call_type": "call_type", "individual": "caller_id", "presence": "presence"}


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
    with warnings.catch_warnings():  # skipped rows are reported by the run itself (every row, data-check format)
        warnings.simplefilter("ignore", UserWarning)
        table = load_table(
            path, label_column=task.label_column, group_columns=groups, path_column=d.path_column,
            start_column=d.start_column, end_column=d.end_column, format=d.format, on_error=d.on_error, **d.options,
        )
    check_run_table(table)  # duplicates and audio under two groups: the same checks as `reprogram data check`
    return table


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


def make_dataset(table: ClipTable, rate: int, config: ExperimentConfig, classes, crop: str, cache: dict):
    from reprogram.data.dataset import WaveformDataset

    return WaveformDataset(
        table, rate, config.data.clip_seconds, crop=crop, classes=classes, seed=config.seed, cache=cache
    )


def waveforms(table: ClipTable, rate: int, cache_dir: Path | None) -> MutableMapping:
    """The decoded clips of ``table`` at ``rate``: memory-mapped from the disk cache (decoded once, ever), or,
    without a cache folder, an empty dict the datasets fill as they decode."""
    if cache_dir is None:
        return {}
    from reprogram.runtime.cache import cached_waveforms

    return cached_waveforms(table, rate, cache_dir)


def external_table(config: ExperimentConfig, classes: list[str]) -> ClipTable:
    table = load_data(config.data.test_path, config)
    unseen = sorted({r.label for r in table} - set(classes))
    if unseen:
        raise ValueError(
            f"external test set {config.data.test_path} has labels {unseen} that the training data "
            f"({classes}) lacks; relabel or drop those rows"
        )
    return table


@dataclass
class Prepared:
    """The split's parts of one run, as tables and center-crop datasets at the method's rate.

    Attributes:
        rows: part name -> row indices of the whole table (``train``, ``val``, ``test``; empty parts dropped).
        parts: part name -> clip table (plus ``external``).
        caches: part name -> the decoded-clip mapping its datasets share.
        eval_sets: part name -> center-crop dataset.
        full: center-crop dataset of the whole table.
        report: skipped rows and unusual clips (:func:`reprogram.data.integrity.input_report`) of the table and,
            under ``external``, of the external test set.
    """

    rows: dict[str, list[int]]
    parts: dict[str, ClipTable]
    caches: dict[str, MutableMapping]
    eval_sets: dict
    full: object
    report: dict


def prepare(table: ClipTable, external: ClipTable | None, split, rate: int, config: ExperimentConfig,
            classes: list[str], cache_dir: Path | None) -> Prepared:
    """Tables, decoded clips and center-crop datasets of every part of ``split`` at ``rate``."""
    rows = {name: list(idx) for name, idx in split.parts().items() if idx}
    parts = {name: table.subset(idx) for name, idx in rows.items()}
    packed = waveforms(table, rate, cache_dir)  # every clip of the table, shared by every part
    caches = {name: packed for name in parts}
    if external is not None:
        parts["external"] = external
        caches["external"] = waveforms(external, rate, cache_dir)
    eval_sets = {n: make_dataset(t, rate, config, classes, "center", caches[n]) for n, t in parts.items()}
    full = make_dataset(table, rate, config, classes, "center", packed)
    report = input_report(table, rate, config.data.clip_seconds)
    if external is not None:
        report["external"] = input_report(external, rate, config.data.clip_seconds)
    for name, part in (("", report), ("external test set: ", report.get("external"))):
        for line in report_lines(part) if part else []:
            log.warning("%s%s", name, line)  # once per run, in the data-check format; full lists in result.json
    return Prepared(rows, parts, caches, eval_sets, full, report)
