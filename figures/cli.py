"""``reprogram figures DIR``: every figure (PDF + PNG) and the results table from ``DIR/runs/*/result.json``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from figures.plots import (
    has_external,
    plot_accuracy_vs_params,
    plot_budget_ablation,
    plot_confusion_matrices,
    plot_label_mappings,
    plot_programs,
)
from figures.tables import results_table
from reprogram.experiment.results import read_results


def read_runs_file(path: str | Path) -> list[str]:
    """Run ids listed in ``path``, one a line (a sweep's ``sweep.txt``); blank lines and ``#`` comments skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"runs file {path} does not exist; pass a sweep's DIR/sweep.txt or a list of run ids")
    ids = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    ids = [i for i in ids if i]
    if not ids:
        raise ValueError(f"runs file {path} lists no run ids; write one run id a line")
    return ids


def select_runs(results: list[dict], ids: list[str], source: str) -> list[dict]:
    """The results whose run id is in ``ids``; warns about listed runs without a result (failed or unfinished)."""
    wanted = set(ids)
    chosen = [r for r in results if r["run_id"] in wanted]
    if not chosen:
        raise FileNotFoundError(f"none of the {len(wanted)} run ids of {source} has a result in this folder; "
                                "pass the runs file of a sweep written to this folder")
    missing = sorted(wanted - {r["run_id"] for r in chosen})
    if missing:
        warnings.warn(f"{len(missing)} run(s) of {source} have no result (failed or unfinished), e.g. "
                      f"{missing[:3]}; the figures use the {len(chosen)} completed", stacklevel=2)
    return chosen


def make_figures(results_dir: str | Path, out: str | Path | None = None, metric: str = "balanced_accuracy",
                 split: str = "test", reference: dict | None = None,
                 runs_file: str | Path | None = None) -> list[Path]:
    """Draw every figure and write the results table for the runs in ``results_dir``.

    Args:
        results_dir: a run or sweep ``--out`` folder.
        out: where figures go (default ``results_dir/figures``).
        metric: headline metric of the accuracy, ablation figures and table.
        split: reported split (``test``, ``val``, ``external``).
        reference: column values of the table's reference system (default: MFCC when present, else none).
        runs_file: only the runs listed there (a sweep's ``sweep.txt``), so two sweeps sharing a folder never mix.

    Returns:
        Every file written.
    """
    results = read_results(results_dir)
    if not results:
        raise FileNotFoundError(f"no result files under {Path(results_dir) / 'runs'}; run `reprogram run` or "
                                "`reprogram sweep` with --out pointing there first")
    if runs_file is not None:
        results = select_runs(results, read_runs_file(runs_file), str(runs_file))
    out = Path(out) if out is not None else Path(results_dir) / "figures"
    paths = plot_accuracy_vs_params(results, out, metric, split)
    if split == "test" and has_external(results):  # the external test set: its own panel
        paths += plot_accuracy_vs_params(results, out, metric, "external")
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
                        help="reference system of the paired comparisons (repeatable), e.g. --reference method=lora "
                        "--reference budget=8; default: the MFCC baseline, else no paired columns")
    parser.add_argument("--runs-file", default=None, metavar="PATH",
                        help="use only the run ids listed in PATH, one a line (a sweep's DIR/sweep.txt)")


def run(args: argparse.Namespace) -> int:
    """``reprogram figures``: print every file written."""
    reference = None
    if args.reference:
        bad = [r for r in args.reference if "=" not in r]
        if bad:
            raise ValueError(f"--reference {bad[0]!r} needs COLUMN=VALUE, e.g. method=mfcc")
        reference = dict(r.split("=", 1) for r in args.reference)
        for key in ("budget",):  # typed columns: compare as the result rows store them
            if key in reference:
                reference[key] = _number(reference[key])
    for path in make_figures(args.results, args.out, args.metric, args.split, reference, args.runs_file):
        print(path)
    return 0


def _number(text: str) -> int | float | str | None:
    if text.lower() in ("none", "null", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reprogram figures`` with ``argv``."""
    parser = argparse.ArgumentParser(prog="reprogram figures")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
