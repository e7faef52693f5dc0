"""Whisper encoder at the clips' true length vs padded to 30 s (issue 7, 5c; goal: >= 6x clips/s on 5 s clips).

The model is ``offline:whisper_tiny_en`` with LoRA r=8 on q/v and a linear head (``lora_linear`` in
step_models.py). A training step (forward, cross-entropy, backward, AdamW) runs on the same batch of 5 s
danum-gibbon clips twice: at their true length (the backbone slices Whisper's positional table: 250 encoder
frames) and zero-padded to 30 s, which is what ``WhisperFeatureExtractor`` + ``WhisperEncoder`` do (1500
frames, no attention mask, as Whisper was trained). Reported: median clips/s of each and their ratio, plus the
FLOPs per step of each (FlopCounterMode), so the time ratio can be read against the work ratio.

Usage: ``python benchmarks/whisper_length.py [--batch 8] [--repeats 3] [--data ../shared/data/danum-gibbon]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from flops import step_flops
from step_models import SPEECH_BACKBONE, build_method, clips, machine_line, make_step, median, timed


def main(argv: list[str] | None = None) -> dict:
    """Time true-length and 30 s-padded steps; print clips/s of each and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0, help="true clip length")
    parser.add_argument("--padded-seconds", type=float, default=30.0)
    parser.add_argument("--data", type=Path, default=None, help="danum-gibbon folder (default ../shared/data/...)")
    parser.add_argument("--speech-backbone", default=SPEECH_BACKBONE)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.padded_seconds < args.seconds:
        raise ValueError(f"--padded-seconds {args.padded_seconds} < --seconds {args.seconds}; pad to a longer length")
    print(machine_line())
    model = build_method("lora_linear", speech_backbone=args.speech_backbone)
    wave, source = clips(args.batch, args.seconds, args.data)  # (B, N)
    rate = model.backbone.spec.sample_rate
    padded = torch.nn.functional.pad(wave, (0, int(round(args.padded_seconds * rate)) - wave.shape[1]))
    rows = {}
    for label, x in (("true_length", wave), ("padded", padded)):
        flops = step_flops(model, x)
        times = timed(make_step(model, x), args.repeats, warmup=1)
        rows[label] = {
            "samples": x.shape[1],
            "gflop_per_step": round(flops / 1e9, 2),
            "step_s_median": round(median(times), 3),
            "step_s_all": [round(t, 3) for t in times],
            "clips_per_s": round(args.batch / median(times), 3),
        }
        print(f"{label:12s}: {x.shape[1] / rate:5.1f} s input, {rows[label]['gflop_per_step']:8.1f} GFLOP/step, "
              f"step {rows[label]['step_s_median']:.2f} s, {rows[label]['clips_per_s']:.2f} clips/s", flush=True)
    speedup = rows["true_length"]["clips_per_s"] / rows["padded"]["clips_per_s"]
    work = rows["padded"]["gflop_per_step"] / rows["true_length"]["gflop_per_step"]
    print(f"true length vs padded to {args.padded_seconds:g} s: {speedup:.1f}x clips/s (goal >= 6x; FLOP ratio "
          f"{work:.1f}x) on batch {args.batch} of {source}")
    print(machine_line())
    result = {"batch": args.batch, "clips": source, "rows": rows, "speedup": round(speedup, 2),
              "flop_ratio": round(work, 2)}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
