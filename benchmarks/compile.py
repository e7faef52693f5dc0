"""Model-path options on and off: ``torch.compile``, channels-last and bf16 autocast (issue 7, item 3).

For each method (``pad_linear``: EfficientNet-Lite0 + padding program + linear mapper; ``lora_linear``: Whisper
tiny.en + LoRA r=8 q/v + linear head) and each variant, a fresh model runs the same training step (forward,
cross-entropy, backward, AdamW) on one batch of 5 s danum-gibbon clips. Reported: the first step's time (for
``compile`` this includes compilation), the median of the next ``--repeats`` steps, and the speed-up of the
median over the plain eager step. Variants: ``eager``; ``compile`` (:class:`reprogram.runtime.accel.AccelConfig`
``compile="default"``, inductor); ``channels_last`` (convnets only); ``bf16`` (CPU autocast).

Usage: ``python benchmarks/compile.py [--methods pad_linear lora_linear] [--variants eager compile ...]``
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

from step_models import (
    IMAGE_BACKBONE,
    SPEECH_BACKBONE,
    build_method,
    clips,
    finish,
    machine_line,
    make_step,
    median,
    timed,
)

from reprogram.runtime.accel import AccelConfig, apply_accel, autocast_context

VARIANTS = {
    "eager": AccelConfig(),
    "compile": AccelConfig(compile="default"),
    "channels_last": AccelConfig(channels_last=True),
    "bf16": AccelConfig(autocast="bf16"),
}


def run(method: str, variant: str, batch: int, repeats: int, data, image: str, speech: str) -> dict:
    config = VARIANTS[variant]
    model = apply_accel(build_method(method, image, speech), config, "cpu")
    wave, source = clips(batch, 5.0, data)
    step = make_step(model, wave, functools.partial(autocast_context, config, "cpu"))
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = timed(step, repeats, warmup=0)
    return {"method": method, "variant": variant, "batch": batch, "clips": source, "first_step_s": round(first, 2),
            "step_s_median": round(median(times), 3), "step_s_all": [round(t, 3) for t in times]}


def main(argv: list[str] | None = None) -> list[dict]:
    """Time every method x variant; print one line each with the speed-up over eager."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["pad_linear", "lora_linear"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data", type=Path, default=None, help="danum-gibbon folder (default ../shared/data/...)")
    parser.add_argument("--image-backbone", default=IMAGE_BACKBONE)
    parser.add_argument("--speech-backbone", default=SPEECH_BACKBONE)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    print(machine_line())
    rows = []
    for method in args.methods:
        base = None
        for variant in ["eager", *[v for v in args.variants if v != "eager"]]:
            if variant == "channels_last" and method != "pad_linear":
                continue  # speech encoders have no 2-D convolutions: apply_accel leaves them unchanged
            try:
                row = run(method, variant, args.batch, args.repeats, args.data, args.image_backbone,
                          args.speech_backbone)
            except (RuntimeError, NotImplementedError) as err:  # e.g. an op without a bf16 CPU kernel
                print(f"{method:12s} {variant:14s} FAILED: {type(err).__name__}: {str(err).splitlines()[0]}")
                rows.append({"method": method, "variant": variant, "error": f"{type(err).__name__}: {err}"[:500]})
                continue
            base = base or row["step_s_median"]
            row["speedup_vs_eager"] = round(base / row["step_s_median"], 3)
            rows.append(row)
            print(f"{method:12s} {variant:14s} batch {args.batch}: first step {row['first_step_s']:7.1f} s, then "
                  f"median {row['step_s_median']:.2f} s ({row['speedup_vs_eager']:.2f}x eager)  [{row['clips']}]",
                  flush=True)
    return finish(rows, args.json)


if __name__ == "__main__":
    main()
