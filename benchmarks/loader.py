"""Issue 16: clips/s of the training loader alone (no model): the runner's memory-mapped waveform cache, random
5 s crops (:class:`reprogram.data.dataset.WaveformDataset`), :func:`reprogram.runtime.threads.make_loader` with
0..N workers, and, with ``--device cuda``, pinned memory plus the ``non_blocking`` copy to the device the training
loop makes. One untimed warm-up epoch per setting (workers start, the cache is mapped), then ``--repeats`` timed
epochs; the median is reported. This is the rate the loader can feed; the loop needs it above the model's.

Usage: python benchmarks/loader.py [--workers 0,2,4] [--clips 5000] [--batch 128] [--device cpu] [--tiny]
       [--json out.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_models import finish, machine_line  # noqa: E402
from training_setup import cycled, data_choice, experiment_config, sync, train_rows  # noqa: E402

from reprogram.experiment.inputs import make_dataset, waveforms  # noqa: E402
from reprogram.experiment.train import unpack  # noqa: E402
from reprogram.runtime.threads import configure_threads, make_loader  # noqa: E402


def epoch_seconds(loader, device: str, epoch: int) -> float:
    """Wall seconds of one epoch of ``loader``, every batch copied to ``device`` as the training loop does."""
    loader.set_epoch(epoch)
    t0 = time.perf_counter()
    for batch in loader:
        wave, target = unpack(batch)
        wave.to(device, non_blocking=True), target.to(device, non_blocking=True)
    sync(device)
    return time.perf_counter() - t0


def main(argv: Sequence[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="0,2", help="comma-separated worker counts")
    parser.add_argument("--clips", type=int, default=None, help="clips per epoch, cycled (default 5000; --tiny: 16)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 128; --tiny: 4)")
    parser.add_argument("--repeats", type=int, default=None, help="timed epochs per setting (default 3; --tiny: 1)")
    parser.add_argument("--device", default="cpu", help="where batches go (cuda: pinned memory, non_blocking)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic corpus instead of danum-gibbon")
    parser.add_argument("--tiny", action="store_true", help="few clips, small batch (tests)")
    parser.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    args.clips = args.clips or (16 if args.tiny else 5000)
    args.batch = args.batch or (4 if args.tiny else 128)
    args.repeats = args.repeats or (1 if args.tiny else 3)
    counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.clips < 1 or args.batch < 1 or args.repeats < 1 or not counts or min(counts) < 0:
        raise SystemExit("--clips, --batch and --repeats must be >= 1 and --workers non-negative integers")
    args.num_workers = 0  # the config's; each setting passes its own count to make_loader
    data_path, source = data_choice(args)
    config = experiment_config("pad_linear", args, data_path, args.batch)
    table, rows, _ = train_rows(config)
    print(machine_line())
    print(f"# data: {source}; {args.clips} random 5 s crops per epoch (rows cycled), batch {args.batch}, "
          f"device {args.device}")
    out = []
    with tempfile.TemporaryDirectory(prefix="loader-cache-") as tmp:
        packed = waveforms(table, 16000, Path(tmp))
        dataset = make_dataset(table.subset(cycled(rows, args.clips)), 16000, config, table.classes, "random", packed)
        for workers in counts:
            loader = make_loader(dataset, args.batch, True, args.seed, workers, args.device)
            configure_threads(loader.num_workers)
            epoch_seconds(loader, args.device, 0)  # warm-up: workers started, cache mapped
            times = [epoch_seconds(loader, args.device, e + 1) for e in range(args.repeats)]
            rate = len(dataset) / statistics.median(times)
            pinned = bool(loader.loader.pin_memory)
            out.append({"workers": workers, "pinned": pinned, "device": args.device, "batch": args.batch,
                        "clips": len(dataset), "epoch_s": times, "clips_per_s": rate, "data": source})
            print(f"workers {workers}: {rate:9.1f} clips/s (median of {args.repeats} epochs of {len(dataset)} clips; "
                  f"pinned memory {pinned})", flush=True)
            del loader
    return finish(out, args.json)


if __name__ == "__main__":
    main()
