"""``reprogram data check|summary|split PATH``: inspect a manifest, a folder of audio, or Raven/Hainan tables."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

from reprogram.data.check import check_table, format_report
from reprogram.data.loaders import FORMATS, load_table
from reprogram.data.manifest import ON_ERROR

SPLIT_KINDS: tuple[str, ...] = ("grouped", "kfold", "grouped-kfold", "logo")


def _loading_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="manifest CSV, folder of audio, Raven selection table(s) or Start/End/Type tables")
    p.add_argument("--format", choices=FORMATS, default="auto", help="dataset layout (default: detect)")
    p.add_argument("--label-column", default=None,
                   help="label column (default: label; Annotation for Raven; Type for Hainan tables)")
    p.add_argument("--group-column", action="append", default=[], dest="group_columns", metavar="COLUMN",
                   help="grouping column (recorder, individual, site); repeatable")
    p.add_argument("--path-column", default="path", help="manifest column with the audio path")
    p.add_argument("--start-column", default=None, help="manifest column with segment starts (s)")
    p.add_argument("--end-column", default=None, help="manifest column with segment ends (s)")
    p.add_argument("--delimiter", default=None,
                   help="manifest field separator (default: comma; tab for .tsv), e.g. --delimiter ';'")
    p.add_argument("--audio-dir", default=None, help="folder of the audio (default: the table's folder)")
    p.add_argument("--label-regex", default=None, help="folders: regex with a named group 'label' on file paths")
    p.add_argument("--background-windows", type=int, default=0,
                   help="Raven/Hainan: background windows sampled per recording away from every event")
    p.add_argument("--on-error", choices=ON_ERROR, default="error",
                   help="error: bad rows fail the check; skip: they are reported as skipped (warnings)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``check`` and ``summary`` subcommands."""
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    check = sub.add_parser("check", help="counts, durations, sample rates, every problem and leakage warnings; "
                                         "exit status 1 on any error")
    _loading_arguments(check)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--no-decode", action="store_true", help="read headers only (skips the empty/NaN audio check)")
    check.add_argument("--no-leakage", action="store_true", help="skip the leakage baselines")
    check.add_argument("--clip-seconds", type=float, default=None,
                       help="model input length for the padding-fraction cue (default: longest clip)")
    check.add_argument("--seed", type=int, default=0, help="seed of the leakage baselines")
    summary = sub.add_parser("summary", help="a human-readable table of classes, groups, durations and rates")
    _loading_arguments(summary)
    split = sub.add_parser("split", help="show the split(s) a grouped or cross-validated protocol gives")
    _loading_arguments(split)
    split.add_argument("--kind", choices=SPLIT_KINDS, default="grouped",
                       help="grouped train/val/test (by the first --group-column), stratified k-fold, grouped "
                            "k-fold, or leave one group out")
    split.add_argument("--fractions", type=float, nargs=3, default=(0.6, 0.2, 0.2), metavar=("TRAIN", "VAL", "TEST"))
    split.add_argument("--k", type=int, default=5, help="folds for the k-fold kinds")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--json", action="store_true", help="print the split reports as JSON")


def _load(args: argparse.Namespace):
    options = {}
    if args.audio_dir:
        options["audio_dir"] = args.audio_dir
    if args.label_regex:
        options["label_regex"] = args.label_regex
    if args.delimiter:
        options["delimiter"] = args.delimiter
    if args.background_windows:
        options["background_windows"] = args.background_windows
    with warnings.catch_warnings():  # skipped rows are listed in the report itself
        warnings.simplefilter("ignore")
        return load_table(args.path, label_column=args.label_column, group_columns=args.group_columns,
                          path_column=args.path_column, start_column=args.start_column, end_column=args.end_column,
                          format=args.format, on_error="skip", **options)


def _splits(args: argparse.Namespace, table) -> list:
    from reprogram.data.splits import grouped_kfold, grouped_split, leave_one_group_out, stratified_kfold

    group = args.group_columns[0] if args.group_columns else None
    if args.kind == "kfold":
        return stratified_kfold(table, args.k, args.seed)
    if group is None:
        raise ValueError(f"--kind {args.kind} needs --group-column (e.g. recorder)")
    if args.kind == "grouped":
        return [grouped_split(table, group, tuple(args.fractions), args.seed)]
    if args.kind == "grouped-kfold":
        return grouped_kfold(table, group, args.k, args.seed)
    return leave_one_group_out(table, group, seed=args.seed)


def run(args: argparse.Namespace) -> int:
    """Run ``data check``, ``data summary`` or ``data split``; returns the exit status."""
    t0 = time.perf_counter()
    try:
        table = _load(args)
    except (KeyError, ValueError, FileNotFoundError, NotADirectoryError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"error: {message}", file=sys.stderr)
        return 1
    if args.data_command == "split":
        try:
            splits = _splits(args, table)
        except (KeyError, ValueError) as err:
            print(f"error: {err.args[0] if err.args else err}", file=sys.stderr)
            return 1
        from reprogram.data.splits import format_split_report, split_report

        group = args.group_columns[0] if args.group_columns else None
        reports = [split_report(table, sp, group) for sp in splits]
        print(json.dumps(reports, indent=2) if args.json else "\n\n".join(map(format_split_report, reports)))
        return 0
    if args.data_command == "summary":
        report = check_table(table, on_error=args.on_error, decode=False, leakage=False)
        print(format_report(report, problems=False))
        return 0
    report = check_table(table, on_error=args.on_error, decode=not args.no_decode, leakage=not args.no_leakage,
                         clip_seconds=args.clip_seconds, seed=args.seed)
    report.wall_time_s = time.perf_counter() - t0
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 1 if report.errors else 0
