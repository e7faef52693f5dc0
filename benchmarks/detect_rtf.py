"""Real-time factor of detection (seconds of audio per second of compute) per finished run.

    python benchmarks/detect_rtf.py RUN_DIR [RUN_DIR ...] [--minutes 10] [--hop 1.0] [--batch 32]

A recording of ``--minutes`` of white noise at the first run's rate is written to a temporary folder and each
run scores it with :func:`reprogram.detect.detect` (decoding, windowing, features and classifier included; no
feature cache is used, every window is computed). Prints one line per run with the window, hop, batch and
thread count. Aim (issue 15): >= 200x for MFCC and cached-feature probes on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reprogram.detect import detect, load_detector  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--hop", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    rate = load_detector(args.runs[0]).sample_rate
    with tempfile.TemporaryDirectory() as tmp:
        audio = Path(tmp) / "noise.flac"
        rng = np.random.default_rng(0)
        sf.write(audio, (0.05 * rng.standard_normal(int(args.minutes * 60 * rate))).astype(np.float32), rate)
        for run in args.runs:
            report = detect(run, [audio], Path(tmp) / Path(run).name, hop_s=args.hop, batch=args.batch,
                            progress=False)
            d = load_detector(run)
            print(f"{d.method:>14} {d.backbone or '-':>24}  window {d.window_s:.1f} s  hop {args.hop} s  batch "
                  f"{args.batch}  threads {torch.get_num_threads()}  audio {report.audio_s:.0f} s  compute "
                  f"{report.compute_s:.1f} s  RTF {report.real_time_factor:.0f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
