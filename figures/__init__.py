"""Paper figures and tables drawn from result files only (``DIR/runs/*/result.json`` and saved tensors).

``reprogram figures DIR`` writes every figure as PDF and PNG, plus the results table in Markdown and LaTeX.
"""

from figures.plots import (
    plot_accuracy_vs_params,
    plot_budget_ablation,
    plot_confusion_matrices,
    plot_label_mappings,
    plot_programs,
)
from figures.tables import results_table

__all__ = [
    "plot_accuracy_vs_params",
    "plot_budget_ablation",
    "plot_confusion_matrices",
    "plot_label_mappings",
    "plot_programs",
    "results_table",
]
