"""Precision-recall curves of event-level detection (``evaluation.json`` of ``reprogram detect --truth``)."""

from __future__ import annotations

from pathlib import Path

from figures.style import COLUMN, paper_style, save


def pr_figure(evaluation: dict, folder: str | Path, stem: str = "pr_curve", title: str = "") -> list[Path]:
    """Pooled PR curve per class and overall, AP in the legend; saved as PDF + PNG in ``folder``."""
    import matplotlib.pyplot as plt

    curve, ap = evaluation["curve"]["pooled"], evaluation["ap"]["pooled"]
    with paper_style():
        fig, ax = plt.subplots(figsize=(COLUMN, COLUMN * 0.8))
        for key, c in curve.items():
            ax.plot(c["recall"], c["precision"], marker=".", ms=2, label=f"{key} (AP {ap[key]:.2f})",
                    lw=1.6 if key == "overall" else 1.0)
        ax.set_xlabel("recall (events)")
        ax.set_ylabel("precision (events)")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_title(title or f"threshold grid {evaluation['curve']['thresholds'][0]}-"
                              f"{evaluation['curve']['thresholds'][-1]}")
        ax.legend(loc="lower left")
        paths = save(fig, folder, stem)
        plt.close(fig)
    return paths
