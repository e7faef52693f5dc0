"""Wall time of repeated ``reprogram run`` calls of one feature method, without and with the runner's disk cache.

Three runs of the same method on the same data, each a new run id (seed 0, 1, 2) so none is skipped:

1. ``--no-cache``: everything in memory, as every run did before the runner used the caches;
2. cold cache: decodes the clips and runs the frozen encoder once, writing both to the cache;
3. warm cache: another seed; the clips are memory-mapped and the features read back (no encoder forward).

Default: ``linear_probe`` on ``offline:whisper_tiny_en``, synthetic call-type corpus. The cache lives in a fresh
temporary folder (removed afterwards) unless ``--cache-dir`` is given.

Usage: python benchmarks/runner_cache.py [--set KEY=VALUE ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reprogram.experiment.config import load_config  # noqa: E402
from reprogram.experiment.runner import run_experiment  # noqa: E402

DEFAULTS = ["data.path=synthetic", "method.name=linear_probe", "backbone.name=offline:whisper_tiny_en"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the wall time of each run and the warm-cache / no-cache ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override on top of the defaults (repeatable)")
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: a fresh temporary one)")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="runner-cache-bench-"))
    cache = Path(args.cache_dir) if args.cache_dir else work / "cache"
    overrides = DEFAULTS + list(args.overrides)
    from reprogram.data.synthetic import ensure_corpus

    ensure_corpus()  # the corpus itself is generated once, outside every timing
    times, accuracy = {}, {}
    try:
        for seed, (label, use_cache) in enumerate([("no_cache", False), ("cold_cache", True), ("warm_cache", True)]):
            config = load_config(None, [*overrides, f"seed={seed}"])
            t0 = time.perf_counter()
            result = run_experiment(config, work / "out", progress=False, cache_dir=cache, use_cache=use_cache)
            times[label] = time.perf_counter() - t0
            accuracy[label] = result["metrics"]["test"]["balanced_accuracy"]
            print(f"{label:10} {times[label]:7.2f} s  test balanced accuracy {accuracy[label]:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = times["warm_cache"] / times["no_cache"]
    print(f"warm cache / no cache: {ratio:.3f} ({' '.join(overrides)})")
    if args.json:
        Path(args.json).write_text(json.dumps({"overrides": overrides, "seconds": times, "ratio": ratio,
                                               "test_balanced_accuracy": accuracy}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
