"""Statistics over seeds and folds: means with bootstrap 95% intervals, and paired comparisons.

Every function is deterministic given its ``seed``. Paired comparisons pair two systems' values on the
same (seed, fold) units, so a method that happens to get an easy fold gets no credit for it.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

#: columns identifying a compared system in tidy result rows
SYSTEM_KEYS = ("method", "variant", "budget", "backbone", "modality")
#: columns identifying the unit two systems are paired on
PAIR_KEYS = ("seed", "fold")


def bootstrap_ci(values: Sequence[float], confidence: float = 0.95, n_resamples: int = 10_000, seed: int = 0) -> dict:
    """Mean and percentile-bootstrap interval of the mean.

    Args:
        values: one value per seed x fold.
        confidence: interval coverage (0.95 for a 95% interval).
        n_resamples: bootstrap resamples.
        seed: seed of the resampling, so the interval is reproducible.

    Returns:
        ``{"mean", "lo", "hi", "std", "n"}``; ``lo``/``hi`` are ``None`` with fewer than two values.
    """
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value; check that the runs have this metric")
    out = {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0, "n": int(x.size)}
    if x.size < 2:
        return {**out, "lo": None, "hi": None}
    if np.all(x == x[0]):
        return {**out, "lo": float(x[0]), "hi": float(x[0])}
    res = sps.bootstrap(
        (x,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return {**out, "lo": float(res.confidence_interval.low), "hi": float(res.confidence_interval.high)}


def paired_comparison(
    a: Mapping[Hashable, float],
    b: Mapping[Hashable, float],
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict:
    """Compare system ``a`` with system ``b`` on the units (seed, fold) both were run on.

    Args:
        a: unit -> metric value of system a.
        b: unit -> metric value of system b.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.
        confidence: coverage of the interval of the mean difference.

    Returns:
        ``n`` (shared units), ``mean_diff`` (a - b), ``lo``/``hi`` (bootstrap interval of the mean
        difference), ``p_bootstrap`` (two-sided paired bootstrap test of a zero mean difference, resampling
        the centred differences), ``p_wilcoxon`` (two-sided Wilcoxon signed-rank test, scipy), and
        ``wins``/``losses``/``ties`` of a over b. P-values are ``None`` with fewer than two shared units.
    """
    units = sorted(set(a) & set(b), key=repr)
    if not units:
        raise ValueError("the two systems share no (seed, fold) unit; run them on the same seeds and folds")
    d = np.array([a[u] - b[u] for u in units], dtype=float)
    out = {
        "n": len(units),
        "mean_diff": float(d.mean()),
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
        "ties": int((d == 0).sum()),
    }
    if len(units) < 2:
        return {**out, "lo": None, "hi": None, "p_bootstrap": None, "p_wilcoxon": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_resamples, len(d)))
    means = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    centred = (d - d.mean())[idx].mean(axis=1)
    p_boot = float((np.abs(centred) >= abs(d.mean()) - 1e-12).mean()) if np.any(d != d[0]) else float(d[0] == 0)
    if np.all(d == 0):
        p_wil = 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p_wil = float(sps.wilcoxon(d, alternative="two-sided").pvalue)
    return {
        **out,
        "lo": float(np.quantile(means, alpha)),
        "hi": float(np.quantile(means, 1 - alpha)),
        "p_bootstrap": p_boot,
        "p_wilcoxon": p_wil,
    }


def _select(rows: Sequence[dict], metric: str, split: str) -> list[dict]:
    chosen = [r for r in rows if r["metric"] == metric and r["split"] == split and r["value"] is not None]
    if not chosen:
        raise ValueError(f"no result rows with metric {metric!r} on split {split!r}; check the metric and split names")
    return chosen


def summarize(
    rows: Sequence[dict],
    metric: str = "balanced_accuracy",
    split: str = "test",
    by: Sequence[str] = (*SYSTEM_KEYS, "task"),
    seed: int = 0,
) -> list[dict]:
    """Mean and bootstrap 95% interval of ``metric`` on ``split`` per group of tidy rows (over seeds x folds).

    Args:
        rows: tidy rows from :func:`reprogram.results.tidy_rows`.
        metric: metric name (``balanced_accuracy``, ``accuracy``, ``macro_f1``, ``roc_auc`` ...).
        split: ``train``, ``val``, ``test`` or ``external``.
        by: the columns defining a group.
        seed: bootstrap seed.

    Returns:
        one dict per group: the ``by`` columns, ``mean``, ``lo``, ``hi``, ``std``, ``n``, and the group's
        ``trainable_params`` (the median over its runs).
    """
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in _select(rows, metric, split):
        groups[tuple(r.get(k) for k in by)].append(r)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        ci = bootstrap_ci([m["value"] for m in members], seed=seed)
        params = float(np.median([m["trainable_params"] for m in members]))
        named = dict(zip(by, key, strict=True))
        out.append({**named, **ci, "trainable_params": params, "metric": metric, "split": split})
    return out


def compare_to_reference(
    rows: Sequence[dict],
    reference: Mapping[str, object],
    metric: str = "balanced_accuracy",
    split: str = "test",
    by: Sequence[str] = SYSTEM_KEYS,
    pair_on: Sequence[str] = PAIR_KEYS,
    seed: int = 0,
) -> list[dict]:
    """Paired comparison of every system with a reference system on their shared (seed, fold) units.

    Args:
        rows: tidy rows.
        reference: column values selecting the reference system (``{"method": "mfcc"}``).
        metric: metric name.
        split: split name.
        by: columns defining a system.
        pair_on: columns defining the unit the two systems are paired on.
        seed: bootstrap seed.
    """
    chosen = _select(rows, metric, split)
    systems: dict[tuple, dict] = defaultdict(dict)
    for r in chosen:
        unit = tuple(r.get(k) for k in pair_on)
        system = tuple(r.get(k) for k in by)
        if unit in systems[system]:
            named = dict(zip(by, system, strict=True)), dict(zip(pair_on, unit, strict=True))
            raise ValueError(
                f"system {named[0]} has two results for unit {named[1]}; add the distinguishing column to `by`"
            )
        systems[system][unit] = r["value"]
    refs = [s for s in systems if all(dict(zip(by, s, strict=True)).get(k) == v for k, v in reference.items())]
    if len(refs) != 1:
        raise ValueError(
            f"reference {dict(reference)} matches {len(refs)} systems; give columns that select one "
            f"of {[dict(zip(by, s, strict=True)) for s in systems]}"
        )
    ref = refs[0]
    out = []
    for system, values in sorted(systems.items(), key=lambda kv: repr(kv[0])):
        if system == ref:
            continue
        shared = set(values) & set(systems[ref])
        if not shared:
            continue
        out.append(
            {
                **dict(zip(by, system, strict=True)),
                **paired_comparison(values, systems[ref], seed=seed),
                "reference": dict(zip(by, ref, strict=True)),
                "metric": metric,
                "split": split,
            }
        )
    return out
