"""Accuracy as the budget grows: one system per axis, swept over its budget knob.

=================  =====================================================  ==========================
axis               system                                                 budget values
=================  =====================================================  ==========================
``pad_width``      image padding program + linear mapping                 2, 4, 8, 16, 32, 48 px
``lowrank_rank``   image low-rank additive program + linear mapping       rank 1, 2, 4, 8, 16
``epsilon``        image full additive program + linear mapping           0.01, 0.03, 0.1, 0.3, 1.0
``wave_seconds``   speech waveform program (V2S) + linear head            0.25, 0.5, 1, 2 s
``prompt_length``  prompt tuning of the speech encoder + linear head      1, 2, 4, 8, 16, 32 prompts
``lora_rank``      LoRA on the speech encoder + linear head               rank 1, 2, 4, 8, 16
=================  =====================================================  ==========================

    python experiments/budget_ablation.py [--axes pad_width,lora_rank] [--data PATH ...] [--seeds 3] [--out DIR]

``DIR/figures/budget_ablation_<task>.pdf`` draws test accuracy against the budget, a panel per system;
``DIR/figures/accuracy_vs_params_<task>.pdf`` the same runs against measured trainable parameters.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reprogram.experiment.catalogue import ABLATIONS
from reprogram.experiment.suite import add_arguments, run_command

NAME = "budget_ablation"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the budget ablation with command line ``argv``."""
    parser = argparse.ArgumentParser(prog="experiments/budget_ablation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, NAME, ("image", "speech"))
    parser.add_argument("--axes", default=",".join(ABLATIONS),
                        help=f"comma-separated axes to sweep (default all: {', '.join(ABLATIONS)})")
    args = parser.parse_args(argv)
    axes = [a.strip() for a in args.axes.split(",") if a.strip()]
    unknown = [a for a in axes if a not in ABLATIONS]
    if unknown or not axes:
        parser.error(f"--axes {args.axes!r}: unknown axis {unknown}; choose from {', '.join(ABLATIONS)}")
    return run_command(NAME, [ABLATIONS[a] for a in axes], args)


if __name__ == "__main__":
    sys.exit(main())
