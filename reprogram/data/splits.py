"""Train/validation/test splits and cross-validation folds, grouped so no group straddles two parts.

Every split carries a validation part: models are selected on validation, never on test. k-fold
cross-validation rotates it (fold ``i`` tests on part ``i`` and validates on part ``i + 1 (mod k)``);
leave-one-group-out draws validation groups from the groups left for training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut, StratifiedGroupKFold, StratifiedKFold

from reprogram.data.records import ClipTable

PARTS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Row indices of the train, validation and test parts of a table.

    Attributes:
        train: training rows.
        val: validation rows (model selection and early stopping).
        test: test rows (reported only).
        name: description (``"grouped by recorder, seed 0"``, ``"fold 2/5"``, ``"test=S12"``).
    """

    train: list[int]
    val: list[int]
    test: list[int]
    name: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def parts(self) -> dict[str, list[int]]:
        """``{"train": [...], "val": [...], "test": [...]}``."""
        return {"train": self.train, "val": self.val, "test": self.test}


def _counts(table: ClipTable, group_column: str) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Groups, classes, clip counts per (group, class) ``(G, C)`` and the group index of every row."""
    values = table.group_values(group_column)
    groups = sorted(set(values))
    classes = table.classes
    gi = {g: i for i, g in enumerate(groups)}
    row_group = np.array([gi[v] for v in values])
    m = np.zeros((len(groups), len(classes)), dtype=np.int64)
    np.add.at(m, (row_group, np.array(table.targets(classes))), 1)
    return groups, classes, m, row_group


def _fix_hint(n_parts: int) -> str:
    return (f"fewer parts (e.g. fractions with test=0 and cross-validation for testing), "
            f"split.kind=logo / group_kfold (leave one group out, grouped k-fold), merging the rare class into "
            f"another, or stratify=False "
            f"(this split needs every class in {n_parts} groups)")


def _candidates(sizes: np.ndarray, f: np.ndarray, n_trials: int, rng: np.random.Generator) -> np.ndarray:
    """Assignments of groups to parts ``(T, G)``: greedy fills in random group orders, and random draws."""
    t, g = n_trials, len(sizes)
    order = np.argsort(rng.random((t, g)), axis=1)  # (T, G) a random group order per trial
    assign = np.empty((t, g), dtype=np.int64)
    load = np.zeros((t, 3))
    rows = np.arange(t)
    for pos in range(g):
        grp = order[:, pos]
        # the part furthest below its target share once this group is counted (ties broken at random)
        deficit = f * (load.sum(axis=1) + sizes[grp])[:, None] - load + rng.uniform(0, 1e-6, (t, 3))
        part = np.where(f > 0, deficit, -np.inf).argmax(axis=1)
        assign[rows, grp] = part
        load[rows, part] += sizes[grp]
    drawn = rng.choice(3, size=(t, g), p=f)  # (T, G) plain random assignments, for variety
    return np.concatenate([assign, drawn])


def _score(assign: np.ndarray, m: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For assignments ``(T, G)`` of groups with counts ``m (G, C)``: classes missing from a part with a
    positive fraction ``(T, C)``, and the distance of part sizes and class proportions from ``f`` ``(T,)``."""
    per_part = np.einsum("tgs,gc->tsc", np.eye(3, dtype=np.int64)[assign], m)  # (T, 3, C)
    holes = (per_part[:, f > 0, :] == 0).any(axis=1)  # (T, C)
    n_class = np.maximum(per_part.sum(axis=1, keepdims=True), 1)  # (T, 1, C)
    score = (np.abs(per_part.sum(axis=2) / m.sum() - f).sum(axis=1)
             + np.abs(per_part / n_class - f[None, :, None]).sum(axis=1).mean(axis=1))  # (T,)
    return holes, score


def grouped_split(
    table: ClipTable,
    group_column: str,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    stratify: bool = True,
    n_trials: int = 2000,
) -> Split:
    """A train/validation/test split in which no group appears in two parts.

    Searches ``n_trials`` seeded assignments of whole groups to parts (greedy fills in random group orders)
    and keeps the one whose part sizes and per-class proportions are closest to ``fractions``, requiring
    (when ``stratify``) every class in every part.

    Args:
        table: the clips.
        group_column: the grouping column (recorder, individual, site, recording).
        fractions: ``(train, val, test)`` fractions of clips; they must sum to 1; ``test`` may be 0.
        seed: seed of the search (deterministic).
        stratify: require every class in every non-empty part.
        n_trials: number of assignments searched.

    Returns:
        The split.

    Raises:
        ValueError: impossible fractions, too few groups, or a class that cannot appear in every part (the
            message names the class, its groups and the fixes).
    """
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or abs(f.sum() - 1) > 1e-6:
        raise ValueError(f"fractions {tuple(fractions)} must be three non-negative numbers (train, val, test) "
                         "summing to 1, e.g. (0.6, 0.2, 0.2)")
    if f[0] == 0 or f[1] == 0:
        raise ValueError("train and validation fractions must be positive: models are selected on validation, "
                         "never on test")
    groups, classes, m, row_group = _counts(table, group_column)
    active = np.flatnonzero(f > 0)
    if len(groups) < len(active):
        raise ValueError(f"{len(groups)} {group_column} group(s) {groups} cannot fill {len(active)} parts. "
                         f"Fix: cross-validate over the groups instead (split.kind=logo or split.kind=group_kfold in "
                         f"`reprogram run`; --kind logo / group_kfold in `reprogram data split`), or use a finer "
                         f"group column.")
    if stratify:
        nested = bool((np.count_nonzero(m, axis=0) == 1).all())  # every class inside one group
        for c, name in enumerate(classes):
            holders = [groups[g] for g in np.flatnonzero(m[:, c])]
            if len(holders) < len(active) and nested:
                raise ValueError(f"every class lies within a single {group_column} group (class {name!r} only in "
                                 f"{holders}), so no split grouped by {group_column} can test a class it trained on. "
                                 f"Fix: use stratified_kfold (within-{group_column} evaluation) and report the "
                                 f"{group_column}-cue baseline of `reprogram data check`, or group by another column.")
            if len(holders) < len(active):
                raise ValueError(f"class {name!r} occurs in only {len(holders)} {group_column} group(s) {holders}, "
                                 f"so it cannot appear in all {len(active)} parts. Fix: {_fix_hint(len(active))}.")
    assign = _candidates(m.sum(axis=1), f, n_trials, np.random.default_rng(seed))  # (T, G)
    holes, score = _score(assign, m, f)
    valid = ~holes.any(axis=1) if stratify else np.ones(len(assign), dtype=bool)
    if not valid.any():
        name = classes[int(holes.sum(axis=0).argmax())]
        holders = [groups[g] for g in np.flatnonzero(m[:, classes.index(name)])]
        raise ValueError(f"no assignment of {group_column} groups in {n_trials} trials puts class {name!r} "
                         f"(groups {holders}) in every part. Fix: {_fix_hint(len(active))}.")
    best = assign[int(np.argmin(np.where(valid, score, np.inf)))]  # (G,)
    parts = [np.flatnonzero(best[row_group] == s).tolist() for s in range(3)]
    return Split(*parts, name=f"grouped by {group_column}, seed {seed}",
                 meta={p: ",".join(groups[g] for g in np.flatnonzero(best == s)) for s, p in enumerate(PARTS)})


def _rotate(folds: list[np.ndarray], n: int, name: str, val: bool, labels: list[str] | None = None) -> list[Split]:
    k = len(folds)
    if val and k < 3:
        raise ValueError(f"{k} folds cannot give train, validation and test parts; use k >= 3 (or val=False)")
    out = []
    for i in range(k):
        v = folds[(i + 1) % k] if val else np.array([], dtype=int)
        held = set(folds[i].tolist()) | set(v.tolist())
        train = [j for j in range(n) if j not in held]
        tag = labels[i] if labels else f"fold {i + 1}/{k}"
        out.append(Split(train, sorted(v.tolist()), sorted(folds[i].tolist()), f"{name} {tag}"))
    return out


def stratified_kfold(table: ClipTable, k: int = 5, seed: int = 0, val: bool = True) -> list[Split]:
    """Stratified k-fold cross-validation (no groups), deterministic by seed.

    Args:
        table: the clips.
        k: number of folds; every class needs at least ``k`` clips.
        seed: shuffling seed.
        val: rotate a validation fold (fold ``i + 1``) out of the training part.

    Returns:
        ``k`` splits whose test parts partition the table.
    """
    y = np.array(table.targets())
    counts = Counter(table.labels)
    rare = sorted(c for c, n in counts.items() if n < k)
    if rare:
        raise ValueError(f"class(es) {[(c, counts[c]) for c in rare]} have fewer clips than k={k} folds. "
                         f"Fix: use k <= {min(counts.values())} or merge the rare classes.")
    skf = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [test for _, test in skf.split(np.zeros(len(y)), y)]
    return _rotate(folds, len(y), "stratified", val)


def grouped_kfold(
    table: ClipTable, group_column: str, k: int = 5, seed: int = 0, stratify: bool = True, val: bool = True
) -> list[Split]:
    """Grouped k-fold cross-validation (scikit-learn's StratifiedGroupKFold): no group in two parts of a fold.

    Args:
        table: the clips.
        group_column: the grouping column.
        k: number of folds (at most the number of groups).
        seed: shuffling seed.
        stratify: balance class proportions across folds where the groups allow.
        val: rotate a validation fold out of the training part.

    Returns:
        ``k`` splits whose test parts partition the table.
    """
    groups, _, m, row_group = _counts(table, group_column)
    if len(groups) < k:
        raise ValueError(f"{len(groups)} {group_column} groups cannot make {k} grouped folds. Fix: use "
                         f"k <= {len(groups)} or leave_one_group_out.")
    y = np.array(table.targets()) if stratify else np.zeros(len(table), dtype=int)
    sgkf = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    folds = [test for _, test in sgkf.split(np.zeros(len(y)), y, row_group)]
    if any(len(t) == 0 for t in folds):
        raise ValueError(f"the {len(groups)} {group_column} groups left a fold empty with k={k}. Fix: use a smaller "
                         "k or leave_one_group_out.")
    return _rotate(folds, len(y), f"grouped by {group_column}", val)


def leave_one_group_out(
    table: ClipTable, group_column: str, val_fraction: float = 0.2, seed: int = 0, n_trials: int = 500
) -> list[Split]:
    """One split per group: that group is the test part; validation groups are drawn from the others.

    For each held-out group, the remaining groups are divided into train and validation (about
    ``val_fraction`` of their clips) by the same seeded search as :func:`grouped_split`, preferring
    divisions where every class of the remaining groups appears in both.

    Args:
        table: the clips.
        group_column: the grouping column (at least 3 groups when ``val_fraction > 0``).
        val_fraction: share of the non-test clips to validate on; 0 for no validation part.
        seed: seed of the validation search.
        n_trials: assignments searched per split.

    Returns:
        One split per group, in sorted group order.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    groups, _, m, row_group = _counts(table, group_column)
    if val_fraction > 0 and len(groups) < 3:
        raise ValueError(f"{len(groups)} {group_column} groups cannot give train, validation and test parts. "
                         "Fix: use val_fraction=0 or a finer group column.")
    f = np.array([1 - val_fraction, val_fraction, 0.0])
    logo = LeaveOneGroupOut()
    out = []
    for _, test in sorted(logo.split(np.zeros(len(row_group)), groups=row_group), key=lambda tt: row_group[tt[1][0]]):
        held = row_group[test[0]]
        rest = np.array([g for g in range(len(groups)) if g != held])
        part = np.zeros(len(groups), dtype=np.int64)
        part[held] = 2
        if val_fraction > 0:
            cand = _candidates(m[rest].sum(axis=1), f, n_trials, np.random.default_rng([seed, held]))  # (T, G-1)
            cand = cand[(cand == 0).any(axis=1) & (cand == 1).any(axis=1)]  # train and val both non-empty
            present = m[rest].sum(axis=0) > 0  # classes the remaining groups hold
            holes, score = _score(cand, m[rest][:, present], f)
            part[rest] = cand[int(np.argmin(score + 10.0 * holes.sum(axis=1)))]
        parts = [np.flatnonzero(part[row_group] == s).tolist() for s in range(3)]
        meta = {p: ",".join(groups[g] for g in np.flatnonzero(part == s)) for s, p in enumerate(PARTS)}
        out.append(Split(*parts, name=f"leave one {group_column} out: test={groups[held]}", meta=meta))
    return out


def split_report(table: ClipTable, split: Split, group_column: str | None = None) -> dict:
    """Counts per class per part, the groups of each part, and the classes a part lacks.

    Returns:
        ``{"name", "classes", "parts": {part: {"clips", "per_class": {class: n}, "groups": [...]}},
        "missing": [[part, class], ...], "shared_groups": [...]}`` (JSON-ready).
    """
    classes = table.classes
    report: dict = {"name": split.name, "classes": classes, "parts": {}, "missing": [], "shared_groups": []}
    seen: dict[str, set[str]] = {}
    for part, idx in split.parts().items():
        per = Counter(table[i].label for i in idx)
        entry = {"clips": len(idx), "per_class": {c: per.get(c, 0) for c in classes}}
        if group_column:
            seen[part] = {table[i].groups[group_column] for i in idx}
            entry["groups"] = sorted(seen[part])
        report["parts"][part] = entry
        if idx:
            report["missing"] += [[part, c] for c in classes if per.get(c, 0) == 0]
    if group_column:
        shared = (seen["train"] & seen["val"]) | (seen["train"] & seen["test"]) | (seen["val"] & seen["test"])
        report["shared_groups"] = sorted(shared)
    return report


def format_split_report(report: dict) -> str:
    """A split report as an aligned text table (classes as rows, parts as columns)."""
    parts = list(report["parts"])
    width = max([len(c) for c in report["classes"]] + [5])
    lines = [report["name"], f"{'class':<{width}} " + " ".join(f"{p:>7}" for p in parts)]
    for c in report["classes"]:
        lines.append(f"{c:<{width}} " + " ".join(f"{report['parts'][p]['per_class'][c]:>7}" for p in parts))
    lines.append(f"{'total':<{width}} " + " ".join(f"{report['parts'][p]['clips']:>7}" for p in parts))
    for p in parts:
        if "groups" in report["parts"][p]:
            lines.append(f"{p} groups: {', '.join(report['parts'][p]['groups'])}")
    if report["missing"]:
        lines.append("missing: " + ", ".join(f"{c} in {p}" for p, c in report["missing"]))
    if report["shared_groups"]:
        lines.append("GROUPS IN TWO PARTS: " + ", ".join(report["shared_groups"]))
    return "\n".join(lines)
