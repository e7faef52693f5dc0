"""Per-window forward time of BirdNET V2.4: LiteRT (``offline:birdnet``) vs the torch rebuild
(``offline:birdnet_torch``, forward only and forward + backward to the input), on one 3 s window at 48 kHz.

Reported per engine: median and min seconds per window over ``--repeats`` timed calls after ``--warmup`` untimed
ones (LiteRT's first call packs its weights), on ``--threads`` CPU threads for both engines, and the 1-minute load
average (the machine may be shared). Usage: ``python benchmarks/birdnet_window.py [--threads 2] [--batch 1]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from step_models import timed  # noqa: E402

from backbones import registry  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1, help="windows per call")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = 0.1 * torch.randn(args.batch, 144_000, generator=torch.Generator().manual_seed(0))
    lite = registry.create("offline:birdnet", num_threads=args.threads)
    net = registry.create("offline:birdnet_torch")

    def torch_forward() -> None:
        with torch.no_grad():
            net.window_outputs(x)

    def torch_backward() -> None:
        xg = x.clone().requires_grad_()
        logits, emb = net.window_outputs(xg)
        (logits.sum() + emb.sum()).backward()

    rows = {}
    for name, fn in (("litert", lambda: lite.window_outputs(x)), ("torch_forward", torch_forward),
                     ("torch_forward_backward", torch_backward)):
        t = [s / args.batch for s in timed(fn, args.repeats, args.warmup)]
        rows[name] = {"median_s_per_window": round(statistics.median(t), 4), "min_s_per_window": round(min(t), 4)}
    out = {"threads": args.threads, "batch": args.batch, "load_1min": round(os.getloadavg()[0], 2), **rows}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


if __name__ == "__main__":
    main()
