"""Per-recorder scores and rank stability: does a ranking of systems hold on recorders the models never saw?

One test recorder cannot rank methods: its background, its callers and its few clips move every score together.
When a test part (or an external test set) holds several groups (recorders), each run's stored per-clip
predictions are split by group and the metric is computed per group, seeds averaged:

- :func:`per_group_scores`: system -> group -> seed-mean metric on that group's test clips;
- :func:`over_groups`: a system's mean over groups with a percentile-bootstrap 95% interval over groups (groups
  are the independent units here: a new recorder is what a user brings), none below ``MIN_UNITS`` groups;
- :func:`rank_stability`: how much the order of systems agrees between groups: mean pairwise Kendall tau and
  Spearman rho between the groups' rankings (ties averaged; ``None`` for a pair with a constant ranking), and
  how often the system best on average is best on a group;
- :func:`rank_agreement`: Spearman / Kendall between two rankings of the same systems (the internal test part
  against the external test set).

Groups come from ``predictions[split]["groups"]`` (column -> one value per clip), written by the runner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from itertools import combinations

import numpy as np
from scipy import stats as sps

from reprogram.experiment.clip_bootstrap import clip_metric
from reprogram.experiment.stats import MIN_UNITS, SYSTEM_KEYS, bootstrap_ci

__all__ = ["over_groups", "per_group_scores", "rank_agreement", "rank_stability"]


def _group_column(result: dict) -> str | None:
    return (result.get("config") or {}).get("task", {}).get("group_column")


def per_group_scores(
    results: Sequence[dict],
    split: str = "test",
    metric: str = "balanced_accuracy",
    by: Sequence[str] = SYSTEM_KEYS,
    system_of: Mapping[str, tuple] | None = None,
) -> dict[tuple, dict[str, float]]:
    """System -> group -> ``metric`` on the group's clips of ``split``, averaged over the system's seeds.

    Args:
        results: result files' contents with stored predictions (``predictions[split]`` with ``target``,
            ``scores`` and ``groups``); runs without groups are left out.
        split: ``test`` or ``external``.
        metric: a clip-level metric of :mod:`reprogram.experiment.clip_bootstrap` (balanced accuracy ...).
        by: the columns naming a system (ignored with ``system_of``).
        system_of: run id -> system key; default the ``by`` values of the result's tidy rows.

    Returns:
        ``{system key: {group: value}}``; a group where a seed lacks clips of it simply has fewer seeds.
    """
    from reprogram.experiment.results import tidy_rows

    if system_of is None:
        system_of = {r["run_id"]: tuple(r.get(k) for k in by) for r in tidy_rows(list(results))}
    values: dict[tuple, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in results:
        stored = (r.get("predictions") or {}).get(split)
        column = _group_column(r)
        if not stored or not column or column not in (stored.get("groups") or {}):
            continue
        target = np.asarray(stored["target"], dtype=int)
        scores = np.asarray(stored["scores"], dtype=float)
        groups = np.asarray(stored["groups"][column])
        if len(groups) != len(target):
            raise ValueError(f"run {r['run_id']}: {len(groups)} group values for {len(target)} {split} clips; "
                             "re-run it (its predictions file is inconsistent)")
        positive = None
        if r.get("detection"):
            label = r["config"]["task"].get("positive_label")
            positive = r["classes"].index(label) if label in r.get("classes", []) else None
        for g in sorted(set(groups.tolist())):
            take = groups == g
            ones = np.ones((1, int(take.sum())))
            value = float(clip_metric(metric, target[take], scores[take], ones, positive)[0])
            values[system_of[r["run_id"]]][str(g)].append(value)
    return {s: {g: float(np.mean(v)) for g, v in sorted(gs.items())} for s, gs in values.items()}


def over_groups(scores: Mapping[str, float], seed: int = 0, min_units: int = MIN_UNITS) -> dict:
    """Mean over groups and its percentile-bootstrap 95% interval over groups (``lo``/``hi`` ``None`` below
    ``min_units`` groups), plus ``worst``/``best`` group values and ``n`` groups."""
    values = [v for v in scores.values() if np.isfinite(v)]
    ci = bootstrap_ci(values, seed=seed, min_units=min_units)
    return {**ci, "worst": float(min(values)), "best": float(max(values))}


def _tau_rho(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None  # a constant ranking has no order to agree with
    tau = float(sps.kendalltau(a, b).statistic)
    rho = float(sps.spearmanr(a, b).statistic)
    return tau, rho


def rank_agreement(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> dict:
    """Kendall tau-b and Spearman rho between two scorings of the systems they share (``n``: shared systems;
    both ``None`` with fewer than 2 or a constant scoring), and whether both put the same system first."""
    shared = sorted(set(a) & set(b), key=repr)
    x, y = [a[s] for s in shared], [b[s] for s in shared]
    tau, rho = _tau_rho(x, y)
    same_best = bool(shared) and shared[int(np.argmax(x))] == shared[int(np.argmax(y))]
    return {"n": len(shared), "kendall": tau, "spearman": rho, "same_best": same_best}


def rank_stability(scores: Mapping[Hashable, Mapping[str, float]]) -> dict:
    """How far the order of systems agrees between groups.

    Args:
        scores: system -> group -> value (:func:`per_group_scores`); only groups every system was scored on count.

    Returns:
        ``n_groups``, ``n_systems``; ``kendall`` and ``spearman``: mean over pairs of groups of the rank
        correlation between their scorings of the systems (pairs with a constant scoring left out; ``None``
        when no pair remains); ``best``: the system with the highest mean over groups; ``best_share``: the share
        of groups on which ``best`` scores highest (ties count as best); ``best_by_group``: group -> its best
        system(s).
    """
    systems = sorted(scores, key=repr)
    groups = sorted(set.intersection(*(set(scores[s]) for s in systems))) if systems else []
    out: dict = {"n_groups": len(groups), "n_systems": len(systems), "kendall": None, "spearman": None,
                 "best": None, "best_share": None, "best_by_group": {}}
    if not groups or not systems:
        return out
    m = np.array([[scores[s][g] for g in groups] for s in systems])  # (S, G)
    taus, rhos = [], []
    for i, j in combinations(range(len(groups)), 2):
        tau, rho = _tau_rho(m[:, i], m[:, j])
        if tau is not None:
            taus.append(tau)
            rhos.append(rho)
    best = int(np.argmax(m.mean(axis=1)))
    top = m.max(axis=0)
    by_group = {g: [systems[s] for s in np.flatnonzero(m[:, k] == top[k])] for k, g in enumerate(groups)}
    return {**out, "kendall": float(np.mean(taus)) if taus else None, "spearman": float(np.mean(rhos)) if rhos
            else None, "best": systems[best], "best_share": float(np.mean(m[best] == top)), "best_by_group": by_group}
