"""What caching frozen work buys: the data path (decode every time vs memory vs memory-mapped disk cache) and a
linear-probe epoch on ``offline:whisper_tiny_en`` pooled features (re-running the frozen encoder vs cached).

Data: danum-gibbon 5 s clips from ``--data-dir`` (default ``$REPROGRAM_SHARED_DATA`` or ../shared/data; skipped
cleanly when absent) or, with ``--synthetic``, the synthetic corpus (call-type task).

1. Data path: one epoch over a random-crop ``WaveformDataset`` (``make_loader``, no workers: items come from
   memory; the decode-every-time mode also runs with one worker, the best it can do), seconds per epoch.
2. Linear probe: a linear layer (AdamW, cross-entropy) trained one epoch on pooled features; uncached runs the
   frozen encoder (``torch.inference_mode``) on every batch, cached reads ``cached_features`` (mmap).
   The one-off costs (decoding, packing, computing the features) are printed separately.

Every cache lives in a fresh temporary folder (removed afterwards) unless ``--cache-dir`` is given.

Usage: python benchmarks/cache.py [--data-dir DIR | --synthetic] [--limit N] [--epochs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reprogram.data.dataset import WaveformDataset  # noqa: E402
from reprogram.data.loaders import load_table  # noqa: E402
from reprogram.data.records import ClipTable  # noqa: E402
from reprogram.runtime.cache import cached_features  # noqa: E402
from reprogram.runtime.threads import available_cores, configure_threads, make_loader  # noqa: E402


class Forget(MutableMapping):
    """A cache that keeps nothing: every item is decoded (and resampled) again."""

    def __getitem__(self, key):
        raise KeyError(key)

    def __setitem__(self, key, value) -> None:
        pass

    def __delitem__(self, key) -> None:
        raise KeyError(key)

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0


def _default_data_dir() -> Path:
    return Path(os.environ.get("REPROGRAM_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _table(args: argparse.Namespace) -> tuple[str, ClipTable] | None:
    if args.synthetic:
        from reprogram.data.synthetic import SYNTHETIC_TASKS, ensure_corpus, task_manifest

        task = SYNTHETIC_TASKS["call_type"]
        manifest = ensure_corpus()  # the default corpus, generated once into the user's cache
        table = load_table(task_manifest(manifest, "call_type"), label_column=task.label_column,
                           group_columns=task.group_columns)
        name = "synthetic/call_type"
    else:
        folder = args.data_dir / "danum-gibbon"
        if not (folder / "manifest.csv").is_file():
            print(f"skipped: real recordings not found at {folder} (set --data-dir, or use --synthetic)")
            return None
        table, name = load_table(folder, group_columns=["recorder"]), "danum-gibbon"
    if args.limit:
        table = table.subset(range(min(args.limit, len(table))))
    return name, table


def _epoch_seconds(run_epoch: Callable[[int], None], epochs: int) -> list[float]:
    times = []
    for e in range(epochs):
        t0 = time.perf_counter()
        run_epoch(e)
        times.append(time.perf_counter() - t0)
    return times


def _iterate(loader) -> Callable[[int], None]:
    def run(epoch: int) -> None:
        loader.set_epoch(epoch)
        for _ in loader:
            pass

    return run


def data_path(table: ClipTable, args: argparse.Namespace, cache_dir: Path) -> dict:
    """Seconds per epoch of the three waveform sources (and the one-off costs of the cached two)."""
    sr, bs = args.sample_rate, args.batch_size
    out = {}

    def make(**kw):
        return WaveformDataset(table, sr, args.clip_seconds, crop="random", seed=0, **kw)

    out["decode_every_time"] = _epoch_seconds(_iterate(make_loader(make(cache=Forget()), bs, True, 0, 0,
                                                                   preload=False)), args.epochs)
    out["decode_every_time_1_worker"] = _epoch_seconds(
        _iterate(make_loader(make(cache=Forget()), bs, True, 0, 1, preload=False)), args.epochs)
    memory = make()
    t0 = time.perf_counter()
    memory.preload()
    out["memory_preload_once"] = time.perf_counter() - t0
    out["memory"] = _epoch_seconds(_iterate(make_loader(memory, bs, True, 0, 0)), args.epochs)
    t0 = time.perf_counter()
    make(cache_dir=cache_dir).preload()  # decode once and pack into the disk cache
    out["disk_build_once"] = time.perf_counter() - t0
    disk = make(cache_dir=cache_dir)
    t0 = time.perf_counter()
    disk.preload()  # a new run: only maps the packed file
    out["disk_open"] = time.perf_counter() - t0
    out["disk_mmap"] = _epoch_seconds(_iterate(make_loader(disk, bs, True, 0, 0)), args.epochs)
    return out


def _train_linear(head: torch.nn.Linear, opt, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = torch.nn.functional.cross_entropy(head(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def probe_epochs(table: ClipTable, args: argparse.Namespace, cache_dir: Path) -> dict:
    """Seconds per linear-probe epoch: frozen encoder re-run on every batch vs features read from the cache."""
    import backbones

    backbone = backbones.create(args.backbone)
    data = WaveformDataset(table, backbone.spec.sample_rate, args.clip_seconds, crop="center",
                           cache_dir=cache_dir)
    data.preload()
    targets = torch.tensor(data.targets)
    k, bs = len(data.classes), args.batch_size
    torch.manual_seed(0)
    head = torch.nn.Linear(backbone.spec.feature_dim, k)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    loader = make_loader(data, bs, True, 0, 0)

    def uncached(epoch: int) -> None:
        loader.set_epoch(epoch)
        for wave, y, _ in loader:
            with torch.inference_mode():
                feats = backbone(wave).features  # (B, D)
            _train_linear(head, opt, feats.clone(), y)

    out = {"uncached": _epoch_seconds(uncached, args.probe_uncached_epochs)}
    t0 = time.perf_counter()
    feats = cached_features(backbone, data, {"benchmark": "linear_probe"}, layer=None, batch_size=bs,
                            cache_dir=cache_dir)
    out["features_compute_once"] = time.perf_counter() - t0
    assert feats.computed
    t0 = time.perf_counter()
    feats = cached_features(backbone, data, {"benchmark": "linear_probe"}, layer=None, batch_size=bs,
                            cache_dir=cache_dir)
    out["features_open"] = time.perf_counter() - t0
    assert not feats.computed
    t0 = time.perf_counter()
    x = torch.from_numpy(np.array(feats.features))  # (M, D), read from the mapped file
    out["features_open"] += time.perf_counter() - t0

    def cached(epoch: int) -> None:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for s in range(0, len(order), bs):
            idx = order[s : s + bs]
            _train_linear(head, opt, x[idx], targets[idx])

    out["cached"] = _epoch_seconds(cached, args.probe_cached_epochs)
    return out


def _summary(times: Sequence[float]) -> float:
    """Median seconds per epoch (robust to a slow first epoch)."""
    return float(np.median(times))


def main(argv: Sequence[str] | None = None) -> int:
    """Run both measurements and print seconds per epoch and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=_default_data_dir(), help="folder holding danum-gibbon/")
    parser.add_argument("--synthetic", action="store_true", help="use the synthetic corpus instead")
    parser.add_argument("--limit", type=int, default=0, help="use the first N clips only (0: all)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default: a fresh temp folder)")
    parser.add_argument("--sample-rate", type=int, default=16000, help="rate of the data-path measurement")
    parser.add_argument("--clip-seconds", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="data-path epochs per mode")
    parser.add_argument("--backbone", default="offline:whisper_tiny_en")
    parser.add_argument("--probe-uncached-epochs", type=int, default=2)
    parser.add_argument("--probe-cached-epochs", type=int, default=20)
    parser.add_argument("--skip-probe", action="store_true", help="only the data-path measurement")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: every core of this process's affinity)")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    args = parser.parse_args(argv)

    found = _table(args)
    if found is None:
        return 0
    name, table = found
    plan = configure_threads(0) if args.threads <= 0 else configure_threads(0, cores=args.threads)
    print(f"{name}: {len(table)} clips of {args.clip_seconds:g} s, batch {args.batch_size}; "
          f"{available_cores()} cores, torch {torch.__version__}, {plan.intra_op} intra-op threads; "
          f"load average {os.getloadavg()[0]:.1f} (above the core count: shared cores)")
    tmp = None if args.cache_dir is not None else Path(tempfile.mkdtemp(prefix="reprogram-cache-bench-"))
    cache_dir = args.cache_dir or tmp
    try:
        result = {"data": name, "clips": len(table), "args": {k: str(v) for k, v in vars(args).items()}}
        result["data_path"] = dp = data_path(table, args, cache_dir)
        base = _summary(dp["decode_every_time"])
        print(f"\n[1] data path, seconds per epoch (median of {args.epochs}), ratio to decode-every-time")
        for mode in ("decode_every_time", "decode_every_time_1_worker", "memory", "disk_mmap"):
            print(f"  {mode:<28} {_summary(dp[mode]):8.3f} s   {_summary(dp[mode]) / base:8.4f}x")
        print(f"  one-off: decode into memory {dp['memory_preload_once']:.2f} s, decode + pack to disk "
              f"{dp['disk_build_once']:.2f} s, open packed cache {dp['disk_open'] * 1e3:.1f} ms")
        if not args.skip_probe:
            result["probe"] = pr = probe_epochs(table, args, cache_dir)
            unc, cac = _summary(pr["uncached"]), _summary(pr["cached"])
            print(f"\n[2] linear-probe epoch on {args.backbone} pooled features")
            print(f"  uncached (frozen encoder every batch)  {unc:8.3f} s  (median of {len(pr['uncached'])})")
            print(f"  cached (mmap features)                 {cac * 1e3:8.3f} ms (median of {len(pr['cached'])})")
            print(f"  ratio cached / uncached                {cac / unc:.5f}x  (goal <= 0.01x)")
            print(f"  one-off: compute + store features {pr['features_compute_once']:.2f} s, "
                  f"open cached features {pr['features_open'] * 1e3:.1f} ms")
            result["probe_ratio"] = cac / unc
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
        result["load_average"] = os.getloadavg()[0]
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
