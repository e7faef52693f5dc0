"""``reprogram cache info|clear``: what the cache folder holds, and emptying it (all of it or one kind)."""

from __future__ import annotations

import argparse
import json

from reprogram.runtime.cache.store import KINDS, cache_root, cache_size_report, clear


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``info [--dir D] [--json]`` and ``clear [--dir D] [--kind K]``."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="entries and size per kind")
    clr = sub.add_parser("clear", help="delete cached entries (every kind, or --kind)")
    for p in (info, clr):
        p.add_argument("--dir", default=None,
                       help="cache folder (default: $REPROGRAM_CACHE or ~/.cache/gibbon-reprogram)")
    info.add_argument("--json", action="store_true", help="print the report as JSON")
    clr.add_argument("--kind", choices=KINDS, default=None, help="clear only this kind")


def run(args: argparse.Namespace) -> int:
    """Print the size report, or clear and print the bytes freed."""
    if args.action == "info":
        report = cache_size_report(args.dir)
        if args.json:
            print(json.dumps(report, indent=1))
            return 0
        print(f"cache folder: {report['root']}")
        print(f"{'kind':<12} {'entries':>8} {'size':>11} {'incomplete':>11}")
        for kind, row in report["kinds"].items():
            print(f"{kind:<12} {row['entries']:>8} {_size(row['bytes']):>11} {row['incomplete']:>11}")
        print(f"{'total':<12} {'':>8} {_size(report['total_bytes']):>11}")
        return 0
    freed = clear(args.dir, args.kind)
    for kind, n in freed.items():
        print(f"cleared {kind}: {_size(n)}")
    print(f"cache folder: {cache_root(args.dir)}")
    return 0
