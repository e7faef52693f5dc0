"""``reprogram figures DIR``: every figure (PDF + PNG) and the results table from ``DIR/runs/*/result.json``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from figures.plots import (
    plot_accuracy_vs_params,
    plot_budget_ablation,
    plot_confusion_matrices,
    plot_label_mappings,
    plot_programs,
)
from figures.tables import results_table
from reprogram.results import read_results


def make_figures(results_dir: str | Path, out: str | Path | None = None, metric: str = "balanced_accuracy",
                 split: str = "test", reference: dict | None = None) -> list[Path]:
    """Draw every figure and write the results table for the runs in ``results_dir``.

    Args:
        results_dir: a run or sweep ``--out`` folder.
        out: where figures go (default ``results_dir/figures``).
        metric: headline metric of the accuracy, ablation figures and table.
        split: reported split (``test``, ``val``, ``external``).
        reference: column values of the table's reference system (default: MFCC when present, else the best).

    Returns:
        Every file written.
    """
    results = read_results(results_dir)
    if not results:
        raise FileNotFoundError(f"no result files under {Path(results_dir) / 'runs'}; run `reprogram run` or "
                                "`reprogram sweep` with --out pointing there first")
    out = Path(out) if out is not None else Path(results_dir) / "figures"
    paths = plot_accuracy_vs_params(results, out, metric, split)
    paths += plot_budget_ablation(results, out, metric, split)
    paths += plot_confusion_matrices(results, out, split)
    paths += plot_label_mappings(results, out)
    paths += plot_programs(results, results_dir, out)
    paths += results_table(results, out, metric, split, reference)
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reprogram figures``."""
    parser.add_argument("results", help="results folder of `reprogram run` / `reprogram sweep` (--out)")
    parser.add_argument("--out", default=None, help="figure folder (default: RESULTS/figures)")
    parser.add_argument("--metric", default="balanced_accuracy",
                        help="headline metric: balanced_accuracy, accuracy, macro_f1, roc_auc, average_precision")
    parser.add_argument("--split", default="test", help="reported split: test, val or external")
    parser.add_argument("--reference", action="append", default=[], metavar="COLUMN=VALUE",
                        help="reference system of the paired comparisons, e.g. --reference method=mfcc")


def run(args: argparse.Namespace) -> int:
    """``reprogram figures``: print every file written."""
    reference = None
    if args.reference:
        bad = [r for r in args.reference if "=" not in r]
        if bad:
            raise ValueError(f"--reference {bad[0]!r} needs COLUMN=VALUE, e.g. method=mfcc")
        reference = dict(r.split("=", 1) for r in args.reference)
    for path in make_figures(args.results, args.out, args.metric, args.split, reference):
        print(path)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reprogram figures`` with ``argv``."""
    parser = argparse.ArgumentParser(prog="reprogram figures")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
