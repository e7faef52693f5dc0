"""``reprogram demo``: the main job. Cross-modal reprogramming against PEFT and classical baselines, one command.

By default on the embedded synthetic corpus (call-type task: great call / duet / male phrase / background;
4 recorders), with one recorder-grouped split (2 recorders train, 1 validates, 1 tests) so that no recorder's
background can leak from training into the score, compared systems:

======================================  =====================================  ====================================
backbone                                method                                 budget
======================================  =====================================  ====================================
``offline:efficientnet_lite0`` (image)  padding program + frequency label map  pad width 16 px
                                        padding program + linear label map     pad width 16 px
                                        full additive program + linear map     epsilon 1.0
``offline:efficientnet_lite0_video``    video program (time chunks -> frames)  pad width 16 px, shared by frames
``offline:whisper_tiny_en`` (speech)    waveform program (V2S) + linear head   1 s of learned waveform
                                        LoRA + linear head                     rank 4
                                        prompt tuning + linear head            8 prompts
                                        linear probe (C chosen on validation)  -
``offline:efficientnet_lite0`` (image)  image probe: logistic regression on    (canvas of the pad program, 16 px)
                                        the features of the pad canvas
(none)                                  MFCC statistics + logistic regression  -
======================================  =====================================  ====================================

with 2 training seeds. Why one grouped split and not leave-one-recorder-out: 4 folds would quadruple the
cost beyond the 15-minute budget on 2 cores, and a grouped split already keeps the test recorder unseen.
The intervals are therefore over training seeds on one test recorder; for a paper use
``--split group_kfold --folds all`` (or ``experiments/compare.py``). Training is short so the whole demo fits
in about 10 minutes of an idle 2-core CPU: 5 epochs of batch 8 for the speech systems, 3 for the image programs,
2 epochs of batch 4 for the video program (on 4 frames, not 8); ``--set training.epochs=30`` trains longer.

Results go to ``DIR/runs/<run id>/`` (``$REPROGRAM_OUT/demo`` or ``~/gibbon-reprogram/demo`` by default),
figures and ``results.md`` / ``results.tex`` to ``DIR/figures/`` and the summary table to ``DIR/summary.md``.
Re-running skips completed runs and resumes an interrupted one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reprogram.experiment.suite import System, run_command
from reprogram.experiment.suite import add_arguments as add_suite_arguments

NAME = "demo"
_PIXEL = {"training.lr": 0.01, "training.weight_decay": 0.0, "data.sample_rate": 16000}
#: image programs cost the most in total (measured on this machine: ~4x a Whisper program's epoch): 3 epochs
_IMAGE = {**_PIXEL, "training.epochs": 3}
#: the inflated video model costs ~9x the image model per clip at 4 frames (fwd+bwd, 1 CPU thread: 1.08 s vs
#: 0.12 s; 8 frames double it): 4 frames, 2 epochs of batch 4 (30 steps) keep it within the demo's time
_VIDEO = {**_PIXEL, "backbone.options": {"frames": 4}, "training.epochs": 2, "training.batch_size": 4}
#: the compared systems, the most expensive first (parallel jobs then finish together)
SYSTEMS = [
    System("program", "video", {"transform": "video", "mapper": "linear"}, (16,), (None,), _VIDEO),
    System("program", "speech", {"transform": "wave_embed", "mapper": "feature_linear"}, (1.0,), (0.25,)),
    System("lora", "speech", {"head": "linear"}, (4,), (2,)),
    System("prompt", "speech", {"head": "linear"}, (8,), (2,)),
    System("program", "image", {"transform": "pad", "mapper": "flm"}, (16,), (None,), _IMAGE),
    System("program", "image", {"transform": "pad", "mapper": "linear"}, (16,), (None,), _IMAGE),
    System("program", "image", {"transform": "full", "mapper": "linear"}, (1.0,), (None,), _IMAGE),
    System("linear_probe", "speech"),
    System("image_probe", "image", {"transform": "pad"}, (16,), (None,), _PIXEL),
    System("mfcc", "none"),
]
#: settings of every demo run (the time budget); ``--set`` overrides them
BASE = {
    "training.epochs": 5,
    "training.batch_size": 8,
    "training.patience": 3,
    "training.warmup_fraction": 0.1,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``reprogram demo``."""
    add_suite_arguments(parser, NAME, ("image", "video", "speech"), seeds=2, jobs=2)


def run(args: argparse.Namespace) -> int:
    """``reprogram demo``: run the comparison, draw the figures, write and print the summary table."""
    return run_command(NAME, SYSTEMS, args, base=BASE, title="reprogram demo")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``reprogram demo`` with ``argv``."""
    parser = argparse.ArgumentParser(prog="reprogram demo", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
