"""Statistics of result rows: means with bootstrap 95% intervals over INDEPENDENT units, and paired comparisons.

Protocol (what a table or figure reports):

1. A system is ``SYSTEM_KEYS``: method, variant (method options), budget, backbone, modality and ``setting`` (a
   hash of every other config value, :func:`reprogram.experiment.results.setting`), so runs with different training,
   data
   or split settings are never pooled. Two results of one system for the same seed on the same clips raise.
2. The independent unit is the evaluated clip set (``eval_set``: the fold of a cross-validation split; test
   parts of different folds are disjoint). Seeds on one fold share its test clips, so they are NOT independent:
   a system's value on a unit is the mean over its seeds there, and the system's mean is the mean over units.
3. Interval and paired tests:

   - ``n_units >= 5`` (``MIN_UNITS``): percentile bootstrap of the mean over units; paired comparisons pair
     two systems' seed-averaged values on their shared units (paired bootstrap of the mean difference and the
     Wilcoxon signed-rank test over units). ``ci = "units"``.
   - fewer units, and every run stored its per-clip predictions: clip-level bootstrap, stratified by unit
     (the clips of every unit are resampled with replacement, the metric recomputed from the predictions of
     every seed, averaged over seeds then units). Paired comparisons resample the SAME clips for both systems
     (clips matched by the stored ids, else by position with equal targets). This interval is conditional on
     the trained models: it covers test-sample variation, not retraining. ``ci = "clips"``.
   - otherwise no interval and no p-value (``n/a``): fewer than 5 numbers cannot support a 95% interval
     (a bootstrap of 2 values returns their min and max).

Every function is deterministic given its ``seed``. Clip-level metrics use the definitions of
:mod:`reprogram.experiment.metrics` (balanced accuracy and macro-F1 over the classes present in the resampled targets).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from reprogram.experiment.clip_bootstrap import CLIP_METRICS, clip_metric, resample_weights

#: columns identifying a compared system in tidy result rows
SYSTEM_KEYS = ("method", "variant", "budget", "backbone", "modality", "setting")
#: column naming the independent unit (the evaluated clip set: a fold's test part); rows without it use ``fold``
UNIT_KEY = "eval_set"
#: fewest independent units for a unit-level bootstrap interval or paired test
MIN_UNITS = 5

__all__ = [
    "CLIP_METRICS",
    "MIN_UNITS",
    "SYSTEM_KEYS",
    "UNIT_KEY",
    "bootstrap_ci",
    "compare_to_reference",
    "paired_comparison",
    "summarize",
]


def bootstrap_ci(
    values: Sequence[float],
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    min_units: int = MIN_UNITS,
) -> dict:
    """Mean and percentile-bootstrap interval of the mean of independent values (one per unit).

    Args:
        values: one value per independent unit (seed-averaged fold values, not seeds x folds).
        confidence: interval coverage (0.95 for a 95% interval).
        n_resamples: bootstrap resamples.
        seed: seed of the resampling, so the interval is reproducible.
        min_units: fewer values give no interval.

    Returns:
        ``{"mean", "lo", "hi", "std", "n"}``; ``lo``/``hi`` are ``None`` with fewer than ``min_units`` values.
    """
    x = np.asarray([v for v in values if v is not None], dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value; check that the runs have this metric")
    out = {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0, "n": int(x.size)}
    if x.size < max(min_units, 2):
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


def _p_centred(diffs: np.ndarray, observed: float) -> float:
    """Two-sided bootstrap p of a zero mean: share of centred resampled means at least as far from 0."""
    centred = diffs - diffs.mean()
    if np.all(centred == 0):
        return float(observed == 0)
    return float((np.abs(centred) >= abs(observed) - 1e-12).mean())


def paired_comparison(
    a: Mapping[Hashable, float],
    b: Mapping[Hashable, float],
    n_resamples: int = 10_000,
    seed: int = 0,
    confidence: float = 0.95,
    min_units: int = MIN_UNITS,
) -> dict:
    """Compare system ``a`` with system ``b`` on the independent units both were evaluated on.

    Args:
        a: unit -> (seed-averaged) metric value of system a.
        b: unit -> metric value of system b.
        n_resamples: bootstrap resamples.
        seed: seed of the resampling.
        confidence: coverage of the interval of the mean difference.
        min_units: fewer shared units give no interval or p-value.

    Returns:
        ``n`` (shared units), ``mean_diff`` (a - b), ``lo``/``hi`` (bootstrap interval of the mean
        difference), ``p_bootstrap`` (two-sided paired bootstrap test of a zero mean difference, resampling
        the centred differences), ``p_wilcoxon`` (two-sided Wilcoxon signed-rank test, scipy), and
        ``wins``/``losses``/``ties`` of a over b. Interval and p-values are ``None`` below ``min_units``.
    """
    units = sorted(set(a) & set(b), key=repr)
    if not units:
        raise ValueError("the two systems share no unit (fold); run them on the same split, seeds and folds")
    d = np.array([a[u] - b[u] for u in units], dtype=float)
    out = {
        "n": len(units),
        "mean_diff": float(d.mean()),
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
        "ties": int((d == 0).sum()),
    }
    if len(units) < max(min_units, 2):
        return {**out, "lo": None, "hi": None, "p_bootstrap": None, "p_wilcoxon": None}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_resamples, len(d)))
    means = d[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
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
        "p_bootstrap": _p_centred(means, float(d.mean())),
        "p_wilcoxon": p_wil,
    }


# --------------------------------------------------------------------------------------------------
# grouping rows into systems x units x seeds


def _select(rows: Sequence[dict], metric: str, split: str) -> list[dict]:
    chosen = [r for r in rows if r["metric"] == metric and r["split"] == split and r["value"] is not None]
    if not chosen:
        raise ValueError(f"no result rows with metric {metric!r} on split {split!r}; check the metric and split names")
    return chosen


def _unit(row: dict) -> Hashable:
    return row[UNIT_KEY] if UNIT_KEY in row else row.get("fold")


def _systems(rows: Sequence[dict], by: Sequence[str]) -> dict[tuple, dict[Hashable, dict[Hashable, dict]]]:
    """system -> unit -> seed -> row; two rows of one system for one seed on one unit raise, naming both runs."""
    systems: dict[tuple, dict[Hashable, dict[Hashable, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        system, unit, seed = tuple(r.get(k) for k in by), _unit(r), r.get("seed")
        if seed in systems[system][unit]:
            other = systems[system][unit][seed]
            raise ValueError(
                f"system {dict(zip(by, system, strict=True))} has two results for unit (seed {seed}, fold "
                f"{r.get('fold')}): runs {other.get('run_id')} and {r.get('run_id')}. They differ only in settings "
                "outside the system columns (e.g. the run name or output options), or come from two sweeps: "
                "restrict the folder to one sweep (`reprogram figures DIR --runs-file DIR/sweep.txt`), delete one "
                "run, or add the distinguishing column to `by`"
            )
        systems[system][unit][seed] = r
    return systems


def _unit_means(units: Mapping[Hashable, Mapping[Hashable, dict]]) -> dict[Hashable, float]:
    """unit -> mean value over the unit's seeds (seeds share the unit's test clips)."""
    return {u: float(np.mean([r["value"] for r in seeds.values()])) for u, seeds in units.items()}


def _aligned(predictions: Mapping[str, dict], run_ids: list[str], order: list | None = None) -> list[dict] | None:
    """The runs' predictions with clips in one order (the first run's, or ``order`` of ids); ``None`` if any run
    lacks predictions. Runs whose clips cannot be matched raise (their results are not on the same clips)."""
    preds = [predictions.get(i) for i in run_ids]
    if any(p is None for p in preds):
        return None
    ref = preds[0]
    ids = order if order is not None else ref["ids"]
    out = []
    for run, p in zip(run_ids, preds, strict=True):
        if ids is not None and p["ids"] is not None:
            where = {c: k for k, c in enumerate(p["ids"])}
            missing = [c for c in ids if c not in where]
            if missing or len(where) != len(ids):
                raise ValueError(f"run {run} was scored on other clips than run {run_ids[0]} of the same unit "
                                 f"({len(missing)} clip(s) missing); re-run both on the same data and split")
            take = np.array([where[c] for c in ids])
            p = {**p, "target": p["target"][take], "scores": p["scores"][take], "ids": list(ids)}
        elif len(p["target"]) != len(ref["target"]) or np.any(p["target"] != ref["target"]):
            raise ValueError(f"runs {run_ids[0]} and {run} of the same unit have different test targets, so they "
                             "were not scored on the same clips; re-run both on the same data and split")
        out.append(p)
    return out


def _clip_values(
    metric: str, units: list[list[dict]], n_resamples: int, seed: int
) -> tuple[float, np.ndarray]:
    """Point value and (R,) resampled values of the unit-mean of seed-mean ``metric`` (clips resampled per unit)."""
    rng = np.random.default_rng(seed)
    point, resampled = [], []
    for runs in units:
        m = len(runs[0]["target"])
        ones = np.ones((1, m))
        point.append(np.mean([clip_metric(metric, p["target"], p["scores"], ones, p["positive"])[0] for p in runs]))
        chunk, values = max(1, min(n_resamples, 2_000_000 // m)), []
        for start in range(0, n_resamples, chunk):  # bounded memory: (chunk, M) weights at a time
            w = resample_weights(m, min(chunk, n_resamples - start), rng)  # (R', M)
            values.append(np.mean([clip_metric(metric, p["target"], p["scores"], w, p["positive"]) for p in runs], 0))
        resampled.append(np.concatenate(values))
    return float(np.mean(point)), np.mean(resampled, axis=0)


def _clip_summary(metric, units, predictions, n_resamples, seed, confidence) -> dict | None:
    if metric not in CLIP_METRICS or predictions is None:
        return None
    aligned = []
    for seeds in units.values():
        runs = _aligned(predictions, [r["run_id"] for r in seeds.values()])
        if runs is None:
            return None
        aligned.append(runs)
    point, values = _clip_values(metric, aligned, n_resamples, seed)
    alpha = (1 - confidence) / 2
    finite = values[np.isfinite(values)]
    return {"mean": point, "lo": float(np.quantile(finite, alpha)), "hi": float(np.quantile(finite, 1 - alpha))}


def summarize(
    rows: Sequence[dict],
    metric: str = "balanced_accuracy",
    split: str = "test",
    by: Sequence[str] = (*SYSTEM_KEYS, "task"),
    seed: int = 0,
    predictions: Mapping[str, dict] | None = None,
    min_units: int = MIN_UNITS,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> list[dict]:
    """Mean and bootstrap 95% interval of ``metric`` on ``split`` per system, over independent units.

    Args:
        rows: tidy rows from :func:`reprogram.experiment.results.tidy_rows`.
        metric: metric name (``balanced_accuracy``, ``accuracy``, ``macro_f1``, ``roc_auc`` ...).
        split: ``train``, ``val``, ``test`` or ``external``.
        by: the columns defining a system.
        seed: bootstrap seed.
        predictions: run id -> per-clip predictions of ``split``
            (:func:`reprogram.experiment.results.split_predictions`); used for a clip-level interval below
            ``min_units``.
        min_units: fewest units for a unit-level interval.
        n_resamples: bootstrap resamples.
        confidence: interval coverage.

    Returns:
        one dict per system: the ``by`` columns, ``mean`` (over units of the seed means), ``lo``, ``hi``
        (``None``: no interval), ``ci`` (``"units"``, ``"clips"`` or ``None``), ``std`` (over units),
        ``n_units``, ``n_runs``, ``trainable_params`` (median over runs), ``metric``, ``split``.

    Raises:
        ValueError: a system has two results for one seed on one unit (names both runs and the fix).
    """
    out = []
    for key, units in sorted(_systems(_select(rows, metric, split), by).items(), key=lambda kv: repr(kv[0])):
        members = [r for seeds in units.values() for r in seeds.values()]
        ci = bootstrap_ci(list(_unit_means(units).values()), confidence, n_resamples, seed, min_units)
        stats = {"mean": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "std": ci["std"],
                 "ci": "units" if ci["lo"] is not None else None}
        if ci["lo"] is None:
            clip = _clip_summary(metric, units, predictions, n_resamples, seed, confidence)
            if clip is not None:
                stats.update(clip, ci="clips")
        params = float(np.median([m["trainable_params"] for m in members]))
        out.append({**dict(zip(by, key, strict=True)), **stats, "n_units": len(units), "n_runs": len(members),
                    "trainable_params": params, "metric": metric, "split": split})
    return out


def _clip_paired(metric, a_units, b_units, shared, predictions, n_resamples, seed, confidence) -> dict | None:
    """Paired clip-level bootstrap of a - b: the same resampled clips of every shared unit for both systems."""
    if metric not in CLIP_METRICS or predictions is None:
        return None
    a_al, b_al = [], []
    for u in shared:
        a_runs = _aligned(predictions, [r["run_id"] for r in a_units[u].values()])
        if a_runs is None:
            return None
        b_runs = _aligned(predictions, [a_units[u][next(iter(a_units[u]))]["run_id"]]
                          + [r["run_id"] for r in b_units[u].values()], a_runs[0]["ids"])
        if b_runs is None:
            return None
        a_al.append(a_runs)
        b_al.append(b_runs[1:])
    # identical generator seeds give identical clip resamples per unit for the two systems
    a_point, a_vals = _clip_values(metric, a_al, n_resamples, seed)
    b_point, b_vals = _clip_values(metric, b_al, n_resamples, seed)
    d = a_vals - b_vals
    d = d[np.isfinite(d)]
    alpha, observed = (1 - confidence) / 2, a_point - b_point
    return {"mean_diff": observed, "lo": float(np.quantile(d, alpha)), "hi": float(np.quantile(d, 1 - alpha)),
            "p_bootstrap": _p_centred(d, observed), "p_wilcoxon": None}


def compare_to_reference(
    rows: Sequence[dict],
    reference: Mapping[str, object],
    metric: str = "balanced_accuracy",
    split: str = "test",
    by: Sequence[str] = SYSTEM_KEYS,
    seed: int = 0,
    predictions: Mapping[str, dict] | None = None,
    min_units: int = MIN_UNITS,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
) -> list[dict]:
    """Paired comparison of every system with a reference system on their shared independent units.

    Args:
        rows: tidy rows.
        reference: column values selecting the reference system (``{"method": "mfcc"}``).
        metric: metric name.
        split: split name.
        by: columns defining a system.
        seed: bootstrap seed.
        predictions: run id -> per-clip predictions of ``split``, for the clip-level paired bootstrap.
        min_units: fewest shared units for a unit-level paired test.
        n_resamples: bootstrap resamples.
        confidence: interval coverage.

    Returns:
        one dict per other system sharing a unit with the reference: its ``by`` columns, ``n_units`` (shared),
        ``mean_diff`` (system - reference), ``lo``/``hi``, ``p_bootstrap``, ``p_wilcoxon`` (unit level only),
        ``wins``/``losses``/``ties`` over units, ``ci`` (``"units"``, ``"clips"`` or ``None``), ``reference``.
    """
    systems = _systems(_select(rows, metric, split), by)
    refs = [s for s in systems if all(dict(zip(by, s, strict=True)).get(k) == v for k, v in reference.items())]
    if len(refs) != 1:
        raise ValueError(
            f"reference {dict(reference)} matches {len(refs)} systems; give columns that select one "
            f"of {[dict(zip(by, s, strict=True)) for s in systems]}"
        )
    ref = refs[0]
    ref_means = _unit_means(systems[ref])
    out = []
    for system, units in sorted(systems.items(), key=lambda kv: repr(kv[0])):
        shared = sorted(set(units) & set(systems[ref]), key=repr)
        if system == ref or not shared:
            continue
        means = _unit_means(units)
        cmp = paired_comparison({u: means[u] for u in shared}, ref_means, n_resamples, seed, confidence, min_units)
        cmp["ci"] = "units" if cmp["lo"] is not None else None
        if cmp["lo"] is None:
            clip = _clip_paired(metric, units, systems[ref], shared, predictions, n_resamples, seed, confidence)
            if clip is not None:
                cmp.update(clip, ci="clips")
        cmp["n_units"] = cmp.pop("n")
        out.append({**dict(zip(by, system, strict=True)), **cmp, "reference": dict(zip(by, ref, strict=True)),
                    "metric": metric, "split": split})
    return out
