"""The protocol part of a suite's ``summary.md`` and of ``figures/results.md``: per-recorder scores, rank
stability, internal vs external agreement, and one sentence on which differences the data support.

Everything is computed from result files (:mod:`reprogram.experiment.ranking` for the per-recorder numbers,
:func:`figures.tables.table_rows` rows for the paired differences); nothing here trains.
"""

from __future__ import annotations

from collections.abc import Sequence

from figures.plots import labelled
from reprogram.experiment.ranking import over_groups, per_group_scores, rank_agreement, rank_stability
from reprogram.experiment.stats import SYSTEM_KEYS

#: what the per-recorder section calls a split
SPLIT_NAMES = {"test": "test part", "external": "external test set"}


def system_label(key: Sequence) -> str:
    """``method [variant] (backbone, budget)`` of a system key in ``SYSTEM_KEYS`` order."""
    s = dict(zip(SYSTEM_KEYS, key, strict=True))
    extra = ", ".join(str(v) for v in (s["backbone"], s["budget"]) if v not in (None, "none"))
    return labelled(s, False) + (f" ({extra})" if extra else "")


def digits_for(lo: float | None, hi: float | None) -> int:
    """Decimals an interval supports: down to the first significant digit of its half-width (at least 1, at
    most 3); 2 without an interval. ``[0.80, 0.90]`` -> 2 (0.85), ``[0.5, 0.9]`` -> 1, ``[0.851, 0.859]`` -> 3."""
    import math

    if lo is None or hi is None:
        return 2
    half = (hi - lo) / 2
    return 3 if half <= 0 else min(3, max(1, -math.floor(math.log10(half))))


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def recorder_section(results: list[dict], split: str, metric: str = "balanced_accuracy") -> list[str]:
    """Markdown lines: the per-recorder table of ``split`` (one column per recorder, the mean over recorders with a
    bootstrap 95% interval over recorders from 5 recorders on, the worst recorder) and its rank stability; empty
    when the runs stored no per-clip groups for ``split``."""
    scores = per_group_scores(results, split, metric)
    if not scores:
        return []
    groups = sorted({g for s in scores.values() for g in s})
    head = ["system", *groups, "mean over recorders [95% CI]", "worst"]
    lines = [f"### Per recorder: {SPLIT_NAMES.get(split, split)} ({metric})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    summary = {key: over_groups(s) for key, s in scores.items()}
    for key in sorted(scores, key=lambda k: -summary[k]["mean"]):
        o = summary[key]
        d = digits_for(o["lo"], o["hi"])
        ci = "[n/a]" if o["lo"] is None else f"[{o['lo']:.{d}f}, {o['hi']:.{d}f}]"
        cells = [system_label(key), *(_f(scores[key].get(g)) for g in groups), f"{o['mean']:.{d}f} {ci}",
                 _f(o["worst"])]
        lines.append("| " + " | ".join(cells) + " |")
    st = rank_stability(scores)
    best = system_label(st["best"]) if st["best"] is not None else "–"
    share = "–" if st["best_share"] is None else f"{round(st['best_share'] * st['n_groups'])} of {st['n_groups']}"
    lines += ["", f"Rank stability over {st['n_groups']} recorders ({st['n_systems']} systems): mean Kendall τ "
              f"{_f(st['kendall'])}, mean Spearman ρ {_f(st['spearman'])} between the recorders' orders (1: every "
              f"recorder ranks the systems alike); the best on average, {best}, is best on {share} recorders. "
              "Per-recorder values are single recorders' clips (seeds averaged): read the spread, not a "
              "recorder's value.", ""]
    return lines


def supported_sentence(rows: list[dict], prefix: str = "", split: str = "test") -> str:
    """One sentence: which systems' paired difference from the reference has a 95% interval excluding 0 (the data
    support that difference) and which do not; ``prefix`` picks the external columns (``"ext_"``)."""
    lo_key, hi_key, d_key = (f"{prefix}delta_lo", f"{prefix}delta_hi", f"{prefix}delta")
    ref = next((r for r in rows if r.get("reference")), None)
    if ref is None:
        return f"On the {SPLIT_NAMES.get(split, split)} no reference system, so no paired claim."
    supported, not_supported, untested = [], [], []
    for r in rows:
        if r.get("reference") or r.get(d_key) is None:
            continue
        name = f"{labelled(r, False)} ({r[d_key]:+.2f})"
        if r.get(lo_key) is None:
            untested.append(name)
        elif r[lo_key] > 0 or r[hi_key] < 0:
            supported.append(name)
        else:
            not_supported.append(name)
    text = (f"On the {SPLIT_NAMES.get(split, split)} the data support a difference from {labelled(ref, False)} "
            f"(paired 95% interval excludes 0) for: {', '.join(supported) or 'none'}; they do not for: "
            f"{', '.join(not_supported) or 'none'}")
    return text + (f"; no interval for: {', '.join(untested)}." if untested else ".")


def protocol_lines(results: list[dict], tables: dict[str, list[dict]], metric: str = "balanced_accuracy") -> list[str]:
    """The summary's protocol section: the supported-differences sentence per split, the per-recorder tables and
    rank stability of the test part and the external test set, and how far their rankings agree."""
    lines = ["## What the data support", ""]
    for rows in tables.values():
        lines.append("- " + supported_sentence(rows))
        if rows and rows[0].get("has_external"):
            lines.append("- " + supported_sentence(rows, "ext_", "external"))
            a = rank_agreement({system_label([r[k] for k in SYSTEM_KEYS]): r["mean"] for r in rows},
                               {system_label([r[k] for k in SYSTEM_KEYS]): r["ext_mean"] for r in rows
                                if r.get("ext_mean") is not None})
            lines.append(f"- test part vs external test set ({a['n']} systems): Spearman ρ {_f(a['spearman'])}, "
                         f"Kendall τ {_f(a['kendall'])}; same best system: {'yes' if a['same_best'] else 'no'}.")
    lines.append("")
    for split in ("test", "external"):
        lines += recorder_section(results, split, metric)
    return lines
