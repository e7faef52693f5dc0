"""The ``reprogram`` command. Each subcommand lives in its own module, imported only when used.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module, one-line help). One line per subcommand.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("reprogram.data.cli", "check, summarise and split datasets (manifest, folder, Raven, Hainan tables)"),
    "run": ("reprogram.experiment.runner", "run one experiment config and write DIR/runs/<run id>/result.json"),
    "sweep": ("reprogram.experiment.sweep", "a resumable grid of runs (methods x backbones x budgets x seeds x folds)"),
    "figures": ("figures.cli", "draw every paper figure and the results table from a results folder"),
    "backbones": ("backbones.cli", "list backbones: input spec, parameters, source labels, weights on this machine"),
    "cache": ("reprogram.runtime.cache_cli", "cache folder: size report per kind (info) and clear [--kind]"),
    "detect": ("reprogram.detect.cli", "a finished run as a detector over long recordings (Raven tables)"),
    "evaluate-detections": ("reprogram.detect.cli", "event-level P/R/F1, PR curve and AP of saved detections"),
    "demo": ("reprogram.experiment.demo", "the main job: reprogramming vs PEFT vs MFCC (synthetic or --data), figures"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only ``command``'s module is imported (all of them when ``None``, for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="reprogram",
        description="Reprogramming and parameter-efficient fine-tuning of frozen models for bioacoustics.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if command is None or name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reprogram`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the chosen subcommand's module, so `reprogram data ...` does not pay for torch models.
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in SUBCOMMANDS else None).parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
