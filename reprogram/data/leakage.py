"""Leakage sanity baselines: how well trivial cues (clip duration, padding, the group) predict the label.

If a classifier on clip duration and padding fraction alone beats chance, a network can too, without
listening to the call (on one real gibbon set duration alone scored 0.37 balanced accuracy against a
chance of 0.25 because some classes were all short clips). If the group (recorder, site) predicts the
label, a model that recognises the recorder's background looks good under any split that is not grouped.

Each cue is scored by cross-validated balanced accuracy against chance ``1 / n_classes``, with a label
permutation test giving a p-value, so small tables do not raise false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier

from reprogram.data.records import ClipTable


@dataclass(frozen=True)
class CueResult:
    """How well one trivial cue predicts the label.

    Attributes:
        cue: ``"duration+padding"`` or ``"group:<column>"``.
        balanced_accuracy: cross-validated balanced accuracy (NaN when it cannot be estimated).
        chance: ``1 / n_classes``.
        p_value: label-permutation p-value of the balanced accuracy.
        skill: ``(balanced_accuracy - chance) / (1 - chance)``: 0 at chance, 1 perfect.
        warn: the cue predicts the label well above chance (``skill > margin`` and ``p_value < alpha``).
        cv: how it was cross-validated.
        message: one sentence for reports.
    """

    cue: str
    balanced_accuracy: float
    chance: float
    p_value: float
    skill: float
    warn: bool
    cv: str
    message: str

    def to_dict(self) -> dict:
        """JSON-ready fields (NaN becomes ``None``)."""
        return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in asdict(self).items()}


def _tree(seed: int, depth: int | None) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(max_depth=depth, min_samples_leaf=3, class_weight="balanced", random_state=seed)


def _score(
    x: np.ndarray, y: np.ndarray, cv_groups: np.ndarray | None, k: int, seed: int, depth: int | None,
    n_permutations: int,
) -> tuple[float, float, str]:
    """Cross-validated balanced accuracy, its permutation p-value, and the CV description."""
    n_min = int(np.bincount(y).min())
    if cv_groups is not None:
        folds = min(k, len(np.unique(cv_groups)))
        cv, desc = StratifiedGroupKFold(folds, shuffle=True, random_state=seed), f"{folds}-fold grouped"
    else:
        folds = min(k, n_min)
        cv, desc = StratifiedKFold(folds, shuffle=True, random_state=seed), f"{folds}-fold stratified"
    if folds < 2:
        return float("nan"), float("nan"), f"{desc} (too few clips or groups to cross-validate)"

    folds = list(cv.split(x, y, cv_groups))  # fixed folds; the permutation null permutes labels only

    def run(labels: np.ndarray) -> float:
        pred = np.empty_like(labels)
        for train, test in folds:
            pred[test] = _tree(seed, depth).fit(x[train], labels[train]).predict(x[test])
        return float(balanced_accuracy_score(labels, pred))

    observed = run(y)
    rng = np.random.default_rng(seed)
    null = [run(rng.permutation(y)) for _ in range(n_permutations)]
    p = (1 + sum(v >= observed for v in null)) / (1 + n_permutations)
    return observed, p, desc


def _result(cue: str, bacc: float, p: float, n_classes: int, cv: str, margin: float, alpha: float,
            what: str) -> CueResult:
    chance = 1.0 / n_classes
    skill = (bacc - chance) / (1 - chance) if np.isfinite(bacc) else float("nan")
    warn = bool(np.isfinite(bacc) and skill > margin and p < alpha)
    verdict = "WELL ABOVE chance: " + what if warn else "not well above chance"
    message = f"{cue}: balanced accuracy {bacc:.3f} vs chance {chance:.3f} ({cv}, p={p:.3f}): {verdict}"
    return CueResult(cue, bacc, chance, p, skill, warn, cv, message)


def duration_cue(
    table: ClipTable,
    durations: Sequence[float],
    clip_seconds: float | None = None,
    group_column: str | None = None,
    k: int = 5,
    seed: int = 0,
    margin: float = 0.1,
    alpha: float = 0.05,
    n_permutations: int = 30,
) -> CueResult:
    """Predict the label from clip duration and padding fraction alone (a depth-3 decision tree).

    Args:
        table: the clips (labelled).
        durations: duration in seconds of every clip (e.g. :func:`reprogram.data.dataset.clip_durations`).
        clip_seconds: model input length the padding fraction refers to (default: the longest clip).
        group_column: cross-validate grouped by this column (recommended: the split's group column).
        k: folds.
        seed: seed of folds and permutations.
        margin: warn above this skill ``(bacc - chance) / (1 - chance)``.
        alpha: and below this permutation p-value.
        n_permutations: label permutations of the p-value.

    Returns:
        The cue's score.
    """
    d = np.asarray(durations, dtype=float)
    if d.shape != (len(table),):
        raise ValueError(f"need one duration per clip: got {d.shape[0]} for {len(table)} clips")
    length = clip_seconds or float(d.max())
    x = np.stack([d, np.clip(1.0 - d / length, 0.0, 1.0)], axis=1)  # (n, 2)
    y = np.array(table.targets())
    groups = np.array(table.group_values(group_column)) if group_column else None
    bacc, p, cv = _score(x, y, groups, k, seed, 3, n_permutations)
    return _result("duration+padding", bacc, p, len(table.classes), cv, margin, alpha,
                   "clip length alone predicts the label (if clips were cut by hand, the cut may be the cue): "
                   "crop every clip to one length no longer than the shortest clip, so padding cannot reveal it, and "
                   "report this baseline next to the model")


def group_cue(
    table: ClipTable,
    group_column: str,
    k: int = 5,
    seed: int = 0,
    margin: float = 0.1,
    alpha: float = 0.05,
    n_permutations: int = 30,
) -> CueResult:
    """Predict the label from the group value alone, under ungrouped stratified cross-validation.

    This is what a model that only recognises the group (a recorder's background, a site's noise) would
    score on a random split: if it is well above chance, only grouped splits measure the calls.

    Args:
        table: the clips (labelled).
        group_column: the group column.
        k: folds.
        seed: seed of folds and permutations.
        margin: warn above this skill.
        alpha: and below this permutation p-value.
        n_permutations: label permutations of the p-value.

    Returns:
        The cue's score.
    """
    values = np.array(table.group_values(group_column)).reshape(-1, 1)
    x = OneHotEncoder(handle_unknown="ignore").fit_transform(values).toarray()  # (n, G)
    y = np.array(table.targets())
    bacc, p, cv = _score(x, y, None, k, seed, None, n_permutations)
    nested = all(len(set(values[y == c, 0])) == 1 for c in np.unique(y))
    if nested:
        what = (f"every class lies within a single {group_column}, so splits cannot be grouped by it; a model can "
                f"reach this score by recognising the {group_column} alone: report this baseline next to the "
                f"model and its accuracy within each {group_column}")
    else:
        what = (f"the {group_column} predicts the label; split by {group_column} (grouped_split / grouped_kfold), "
                "never at random")
    return _result(f"group:{group_column}", bacc, p, len(table.classes), cv, margin, alpha, what)


def leakage_checks(
    table: ClipTable,
    durations: Sequence[float],
    group_columns: Sequence[str] = (),
    clip_seconds: float | None = None,
    seed: int = 0,
) -> list[CueResult]:
    """Every leakage baseline of a table: duration+padding (stratified CV) and each group column.

    Tables with fewer than two classes give no results.
    """
    if len(table.classes) < 2:
        return []
    out = [duration_cue(table, durations, clip_seconds, None, seed=seed)]
    out += [group_cue(table, g, seed=seed) for g in group_columns]
    return out
