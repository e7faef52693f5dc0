"""The results table (Markdown and LaTeX): mean and bootstrap 95% interval over seeds x folds per system, with
paired comparisons against a reference system on the same (seed, fold) units."""

from __future__ import annotations

from pathlib import Path

from figures.plots import SYSTEM, by_task
from figures.style import method_label
from reprogram.results import atomic_write_text, tidy_rows
from reprogram.stats import compare_to_reference, summarize

COLUMNS = (
    "method",
    "backbone",
    "modality",
    "budget",
    "trainable",
    "score",
    "macro-F1",
    "n",
    "Δ vs ref",
    "p (bootstrap)",
    "p (Wilcoxon)",
)


def _fmt(x, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _params(n: float) -> str:
    n = float(n)
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return f"{n:.0f}"


def _reference(summary: list[dict], reference: dict | None) -> dict | None:
    """The reference system: the one given, else the MFCC baseline (logistic regression first), else the best."""
    if reference is not None:
        return reference
    mfcc = sorted((s for s in summary if s["method"] == "mfcc"), key=lambda s: (s["variant"] != "", s["variant"]))
    best = mfcc[0] if mfcc else max(summary, key=lambda s: s["mean"])
    return {k: best[k] for k in SYSTEM}


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
            else the best system.
        seed: bootstrap seed.
    """
    out = {}
    for task, group in by_task(results).items():
        rows = tidy_rows(group)
        summary = summarize(rows, metric, split, by=SYSTEM, seed=seed)
        f1 = {tuple(s[k] for k in SYSTEM): s for s in summarize(rows, "macro_f1", split, by=SYSTEM, seed=seed)}
        ref = _reference(summary, reference)
        comparisons = {}
        if ref is not None:
            for c in compare_to_reference(rows, ref, metric, split, by=SYSTEM, seed=seed):
                comparisons[tuple(c[k] for k in SYSTEM)] = c
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
                    "p_bootstrap": c.get("p_bootstrap"),
                    "p_wilcoxon": c.get("p_wilcoxon"),
                }
            )
        out[task] = table
    return out


def _cells(r: dict) -> list[str]:
    ci = "" if r["lo"] is None else f" [{r['lo']:.3f}, {r['hi']:.3f}]"
    return [
        method_label(r["method"], r["variant"]) + (" (ref)" if r["reference"] else ""),
        str(r["backbone"] or "–"),
        str(r["modality"]),
        "–" if r["budget"] is None else str(r["budget"]),
        _params(r["trainable_params"]),
        f"{r['mean']:.3f}{ci}",
        _fmt(r["macro_f1"]),
        str(r["n"]),
        "–" if r["delta"] is None else f"{r['delta']:+.3f}",
        _fmt(r["p_bootstrap"]),
        _fmt(r["p_wilcoxon"]),
    ]


def to_markdown(tables: dict[str, list[dict]], metric: str, split: str) -> str:
    """The tables as Markdown (a section per task)."""
    lines = []
    for task, rows in tables.items():
        head = [c if c != "score" else f"{split} {metric} [95% CI]" for c in COLUMNS]
        lines += [f"### Task: {task}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
        lines += [
            "",
            "Mean over seeds x folds with percentile-bootstrap 95% intervals; Δ and p-values: paired "
            "against the reference on shared (seed, fold) units.",
            "",
        ]
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
        head = [c if c != "score" else f"{split} {metric.replace('_', ' ')}" for c in COLUMNS]
        parts += [
            r"\begin{table}[t]",
            r"\centering\small",
            rf"\caption{{Task: {_tex(task)}. Mean over seeds $\times$"
            r" folds [bootstrap 95\% CI]; $\Delta$ and $p$ paired against the reference.}",
            r"\begin{tabular}{" + "l" * 4 + "r" * (len(COLUMNS) - 4) + "}",
            r"\toprule",
            " & ".join(_tex(h) for h in head) + r" \\",
            r"\midrule",
        ]
        parts += [" & ".join(_tex(c) for c in _cells(r)) + r" \\" for r in rows]
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
    atomic_write_text(paths[0], to_markdown(tables, metric, split))
    atomic_write_text(paths[1], to_latex(tables, metric, split))
    return paths
