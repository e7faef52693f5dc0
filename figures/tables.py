"""The results table (Markdown and LaTeX): per system the mean and bootstrap 95% interval over independent units
(folds, seeds averaged within a fold; clip-level bootstrap for fewer than 5 folds when per-clip predictions are
stored; see :mod:`reprogram.experiment.stats`), and paired comparisons against a reference system on their shared units.

The reference is the MFCC baseline when the folder has one, else the system given with ``--reference``; with
neither there is no paired column (the caption says so). It is never chosen by its score on the reported split.
"""

from __future__ import annotations

from pathlib import Path

from figures.plots import SYSTEM, by_task, labelled, replicates, several_settings
from figures.report import digits_for, protocol_lines
from reprogram.experiment.results import atomic_write_text, split_predictions, tidy_rows
from reprogram.experiment.stats import MIN_UNITS, compare_to_reference, summarize

COLUMNS = (
    "method",
    "setting",
    "backbone",
    "modality",
    "budget",
    "trainable",
    "score",
    "macro-F1",
    "units",
    "Δ vs ref",
    "p (bootstrap)",
    "p (Wilcoxon)",
    "external",
    "Δ ext vs ref",
    "p ext",
)
#: columns shown only when the runs were also scored on an external test set (``data.test_path``)
EXTERNAL = ("external", "Δ ext vs ref", "p ext")


def _score(mean: float | None, lo: float | None, hi: float | None) -> str:
    """``mean [lo, hi]`` rounded to what the interval supports (:func:`digits_for`)."""
    if mean is None:
        return "–"
    d = digits_for(lo, hi)
    return f"{mean:.{d}f}" + (" [n/a]" if lo is None else f" [{lo:.{d}f}, {hi:.{d}f}]")


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _delta(d: float | None, lo: float | None, hi: float | None) -> str:
    """A paired difference with its interval, signed, rounded to what the interval supports."""
    if d is None:
        return "–"
    k = digits_for(lo, hi)
    return f"{d:+.{k}f}" + ("" if lo is None else f" [{lo:+.{k}f}, {hi:+.{k}f}]")


def _p(x: float | None) -> str:
    """A p-value; below 0.001 (a bootstrap p of 0 only means below its resolution) as ``<0.001``."""
    return "–" if x is None else ("<0.001" if x < 0.001 else f"{x:.3f}")


def _params(n: float) -> str:
    n = float(n)
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def _reference(summary: list[dict], reference: dict | None) -> tuple[dict | None, str]:
    """The reference system and the caption's sentence about it.

    The one given; else the MFCC baseline (logistic regression, i.e. no options, first) when exactly one MFCC
    system of that variant exists; else none. Never the best system on the reported split: that choice would
    bias every paired p-value.
    """
    if reference is not None:
        return reference, f"reference: {', '.join(f'{k}={v}' for k, v in reference.items())} (given)"
    mfcc = [s for s in summary if s["method"] == "mfcc"]
    if not mfcc:
        return None, ("no reference system (no MFCC run; pass --reference COLUMN=VALUE, e.g. method=lora), "
                      "so no paired comparison")
    first = min(s["variant"] for s in mfcc)  # "" (logistic regression, the default) sorts first
    chosen = [s for s in mfcc if s["variant"] == first]
    if len(chosen) > 1:
        return None, (f"no reference system: {len(chosen)} MFCC systems differ in setting "
                      f"({', '.join(sorted(str(s['setting']) for s in chosen))}); pass --reference method=mfcc "
                      "--reference setting=<one of them>")
    return {k: chosen[0][k] for k in SYSTEM}, "reference: the MFCC baseline"


def table_rows(
    results: list[dict],
    metric: str = "balanced_accuracy",
    split: str = "test",
    reference: dict | None = None,
    seed: int = 0,
) -> dict[str, list[dict]]:
    """Per task: one row per system (sorted by trainable parameters) with its statistics and comparison.

    Args:
        results: result files' contents.
        metric: the headline metric.
        split: the reported split.
        reference: column values selecting the reference system; default the MFCC baseline when present,
            else none (no paired comparison).
        seed: bootstrap seed.

    Returns:
        task -> rows; every row has the :func:`reprogram.experiment.stats.summarize` keys (``n_units`` included) plus
        ``macro_f1``, ``reference`` (is it the reference), ``delta``, ``p_bootstrap``, ``p_wilcoxon``,
        ``show_setting`` (the task's table needs a setting column), ``has_reference`` and ``caption`` (the
        reference sentence).
    """
    out = {}
    for task, group in by_task(results).items():
        rows = tidy_rows(group)
        predictions = split_predictions(group, split)
        summary = summarize(rows, metric, split, by=SYSTEM, seed=seed, predictions=predictions)
        f1 = {
            tuple(s[k] for k in SYSTEM): s
            for s in summarize(rows, "macro_f1", split, by=SYSTEM, seed=seed, predictions=predictions)
        }
        ref, caption = _reference(summary, reference)
        comparisons = {}
        if ref is not None:
            for c in compare_to_reference(rows, ref, metric, split, by=SYSTEM, seed=seed, predictions=predictions):
                comparisons[tuple(c[k] for k in SYSTEM)] = c
        external = _external(group, rows, metric, ref, seed)
        show = several_settings(summary)
        table = []
        for s in sorted(summary, key=lambda s: (s["trainable_params"], str(s["method"]))):
            key = tuple(s[k] for k in SYSTEM)
            c = comparisons.get(key, {})
            is_ref = ref is not None and all(s.get(k) == v for k, v in ref.items())
            table.append(
                {
                    **s,
                    "macro_f1": f1.get(key, {}).get("mean"),
                    "reference": is_ref,
                    "delta": c.get("mean_diff"),
                    "delta_lo": c.get("lo"),
                    "delta_hi": c.get("hi"),
                    **external.get(key, {}),
                    "has_external": bool(external),
                    "p_bootstrap": c.get("p_bootstrap"),
                    "p_wilcoxon": c.get("p_wilcoxon"),
                    "show_setting": show,
                    "has_reference": ref is not None,
                    "caption": caption,
                }
            )
        out[task] = table
    return out


def _external(group: list[dict], rows: list[dict], metric: str, ref: dict | None, seed: int) -> dict[tuple, dict]:
    """System key -> its external-test-set statistics (``ext_mean``/``ext_lo``/``ext_hi``, and against the
    reference ``ext_delta``/``ext_delta_lo``/``ext_delta_hi``/``ext_p``); empty without an external set."""
    if not any(r["split"] == "external" and r["metric"] == metric for r in rows):
        return {}
    predictions = split_predictions(group, "external")
    rows = replicates(rows)  # every fold's models score the same external clips: one unit
    out = {tuple(s[k] for k in SYSTEM): {"ext_mean": s["mean"], "ext_lo": s["lo"], "ext_hi": s["hi"]}
           for s in summarize(rows, metric, "external", by=SYSTEM, seed=seed, predictions=predictions)}
    if ref is not None and any(all(dict(zip(SYSTEM, key, strict=True)).get(k) == v for k, v in ref.items())
                               for key in out):
        for c in compare_to_reference(rows, ref, metric, "external", by=SYSTEM, seed=seed, predictions=predictions):
            out[tuple(c[k] for k in SYSTEM)].update(ext_delta=c["mean_diff"], ext_delta_lo=c["lo"],
                                                    ext_delta_hi=c["hi"], ext_p=c["p_bootstrap"])
    return out


PAIRED = ("Δ vs ref", "p (bootstrap)", "p (Wilcoxon)", "Δ ext vs ref", "p ext")


def _columns(rows: list[dict]) -> list[str]:
    """The task's columns: ``setting`` only when a system ran under several; the paired ones only with a reference."""
    first = rows[0] if rows else {"show_setting": False, "has_reference": False, "has_external": False}
    return [c for c in COLUMNS if (c != "setting" or first["show_setting"]) and (c not in PAIRED or
            first["has_reference"]) and (c not in EXTERNAL or first.get("has_external"))]


def _cells(r: dict, columns: list[str]) -> list[str]:
    cells = {
        "method": labelled(r, False) + (" (ref)" if r["reference"] else ""),
        "setting": str(r["setting"]),
        "backbone": str(r["backbone"] or "–"),
        "modality": str(r["modality"]),
        "budget": "–" if r["budget"] is None else str(r["budget"]),
        "trainable": _params(r["trainable_params"]),
        "score": _score(r["mean"], r["lo"], r["hi"]),
        "macro-F1": _fmt(r["macro_f1"], digits_for(r["lo"], r["hi"])),
        "units": str(r["n_units"]),
        "Δ vs ref": _delta(r.get("delta"), r.get("delta_lo"), r.get("delta_hi")),
        "p (bootstrap)": _p(r["p_bootstrap"]),
        "p (Wilcoxon)": _p(r["p_wilcoxon"]),
        "external": _score(r.get("ext_mean"), r.get("ext_lo"), r.get("ext_hi")),
        "Δ ext vs ref": _delta(r.get("ext_delta"), r.get("ext_delta_lo"), r.get("ext_delta_hi")),
        "p ext": _p(r.get("ext_p")),
    }
    return [cells[c] for c in columns]


PROTOCOL = (
    "Mean over independent units (folds; seeds averaged within a fold, as seeds share a fold's test clips) "
    f"with percentile-bootstrap 95% intervals over units when there are at least {MIN_UNITS}; with fewer, a "
    "clip-level bootstrap stratified by fold from the stored per-clip predictions (test-sample variation "
    "given the trained models), else n/a. Δ and p-values: paired against the reference on shared units "
    "(Wilcoxon over units only). An external test set (`data.test_path`) is its own column with its own "
    "intervals and paired tests (every seed and fold is scored on all of its clips). Values are rounded to the "
    "first significant digit of their interval's half-width (2 decimals without an interval)."
)


def _caption(rows: list[dict]) -> str:
    ref = rows[0]["caption"] if rows else ""
    shown = " Setting: hash of the run's other config values (one system ran under several)." if (
        rows and rows[0]["show_setting"]) else ""
    return f"{PROTOCOL} {ref[:1].upper()}{ref[1:]}.{shown}"


def to_markdown(tables: dict[str, list[dict]], metric: str, split: str) -> str:
    """The tables as Markdown (a section per task)."""
    lines = []
    for task, rows in tables.items():
        head = [c if c != "score" else f"{split} {metric} [95% CI]" for c in _columns(rows)]
        lines += [f"### Task: {task}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_cells(r, _columns(rows))) + " |" for r in rows]
        lines += ["", _caption(rows), ""]
    return "\n".join(lines)


def _tex(s: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("_", r"\_"),
        ("%", r"\%"),
        ("&", r"\&"),
        ("#", r"\#"),
        ("Δ", r"$\Delta$"),
        ("–", "--"),
    ):
        s = s.replace(a, b)
    return s


def to_latex(tables: dict[str, list[dict]], metric: str, split: str) -> str:
    """The tables as LaTeX ``booktabs`` tabulars (a table per task)."""
    parts = []
    for task, rows in tables.items():
        cols = _columns(rows)
        head = [c if c != "score" else f"{split} {metric.replace('_', ' ')}" for c in cols]
        n_left = 5 if "setting" in cols else 4
        parts += [
            r"\begin{table}[t]",
            r"\centering\small",
            rf"\caption{{Task: {_tex(task)}. {_tex(_caption(rows))}}}",
            r"\begin{tabular}{" + "l" * n_left + "r" * (len(cols) - n_left) + "}",
            r"\toprule",
            " & ".join(_tex(h) for h in head) + r" \\",
            r"\midrule",
        ]
        parts += [" & ".join(_tex(c) for c in _cells(r, cols)) + r" \\" for r in rows]
        parts += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(parts)


def results_table(
    results: list[dict],
    out: str | Path,
    metric: str = "balanced_accuracy",
    split: str = "test",
    reference: dict | None = None,
) -> list[Path]:
    """Write ``results.md`` and ``results.tex`` into ``out``; returns their paths."""
    tables = table_rows(results, metric, split, reference)
    out = Path(out)
    paths = [out / "results.md", out / "results.tex"]
    text = to_markdown(tables, metric, split) + "\n" + "\n".join(protocol_lines(results, tables, metric))
    atomic_write_text(paths[0], text)
    atomic_write_text(paths[1], to_latex(tables, metric, split))
    return paths
