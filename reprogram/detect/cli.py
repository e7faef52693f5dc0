"""``reprogram detect RUN_DIR AUDIO... --out DIR [--truth TABLES]`` and
``reprogram evaluate-detections DIR --truth TABLES`` (re-evaluate saved scores with another rule)."""

from __future__ import annotations

import argparse
import json

from reprogram.detect.events import EventRule


def _rule_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=float, default=0.5, help="probability at which a window is active")
    parser.add_argument("--smooth", type=int, default=1, help="moving-average length in windows (1: none)")
    parser.add_argument("--merge-gap", type=float, default=0.0, help="merge events at most this many s apart")
    parser.add_argument("--min-duration", type=float, default=0.0, help="drop events shorter than this (s)")
    parser.add_argument("--truth", default=None, metavar="TABLES",
                        help="annotated selection table or folder (<recording>.selections.txt) to evaluate against")
    parser.add_argument("--min-cover", type=float, default=0.5,
                        help="a prediction matches an annotation when it covers this fraction of it")
    parser.add_argument("--background", action="append", default=None, metavar="LABEL",
                        help="class never detected (repeatable; default: noise, background, none)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reprogram detect`` (``evaluate-detections`` when the parser's prog says so)."""
    if parser.prog.endswith("evaluate-detections"):
        parser.add_argument("folder", help="the --out folder of `reprogram detect` (its *.scores.npz)")
        _rule_arguments(parser)
        parser.set_defaults(_evaluate_only=True)
        return
    parser.add_argument("run_dir", help="a finished run: DIR/runs/<run id>")
    parser.add_argument("audio", nargs="+", help="recordings or folders of them")
    parser.add_argument("--out", required=True, help="folder for selection tables, events.csv and scores")
    parser.add_argument("--hop", type=float, default=1.0, help="seconds between window starts")
    parser.add_argument("--batch", type=int, default=32, help="windows per forward pass")
    parser.add_argument("--chunk", type=float, default=120.0, help="seconds of windows decoded at a time")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    _rule_arguments(parser)


def _rule(args) -> EventRule:
    return EventRule(args.threshold, args.smooth, args.merge_gap, args.min_duration)


def run(args: argparse.Namespace) -> int:
    from reprogram.detect.run import DEFAULT_BACKGROUND

    background = tuple(args.background) if args.background else DEFAULT_BACKGROUND
    if getattr(args, "_evaluate_only", False):
        return evaluate_only(args, background)
    from reprogram.detect.run import detect

    report = detect(args.run_dir, args.audio, args.out, hop_s=args.hop, batch=args.batch, rule=_rule(args),
                    background=background, truth=args.truth, min_cover=args.min_cover, chunk_s=args.chunk,
                    progress=args.progress)
    print(f"{len(report.scored)} recordings, {report.audio_s:.0f} s of audio, {len(report.events)} events, "
          f"real-time factor {report.real_time_factor:.1f}; outputs in {report.out}")
    _print_evaluation(report.evaluation)
    for path, err in report.failures:
        print(f"FAILED {path}: {err}")
    return 1 if report.failures else 0


def evaluate_only(args, background) -> int:
    from pathlib import Path

    from reprogram.detect.events import target_classes
    from reprogram.detect.report import write_evaluation
    from reprogram.detect.run import load_scored

    if args.truth is None:
        raise SystemExit("evaluate-detections needs --truth TABLES")
    scored = load_scored(args.folder)
    summary = json.loads((Path(args.folder) / "detection.json").read_text())
    targets = target_classes(next(iter(scored.values()))["classes"], background)
    summary["rule"] = vars(_rule(args))
    _print_evaluation(write_evaluation(Path(args.folder), scored, args.truth, targets, _rule(args), args.min_cover,
                                       summary))
    return 0


def _print_evaluation(evaluation: dict | None) -> None:
    if evaluation is None:
        return
    pooled, ap = evaluation["at_threshold"]["pooled"], evaluation["ap"]["pooled"]
    for key in [*evaluation["targets"], "overall"]:
        m = pooled["overall"] if key == "overall" else pooled["classes"][key]
        print(f"{key:>20}: P {m['precision']:.3f} R {m['recall']:.3f} F1 {m['f1']:.3f} AP {ap[key]:.3f} "
              f"(tp {m['tp']} fp {m['fp']} fn {m['fn']})")
