"""Image-model reprogramming: every canvas program and label mapper on the image backbones.

Programs (pad, full additive, low-rank, frequency band, sample-specific mask, AutoVP) with a linear label
mapping, and the padding program with every mapper (random, frequency, iterative, linear), on
``offline:efficientnet_lite0`` (or ``--backbone image=timm:...``; repeat to compare several image models).

    python experiments/image.py [--data PATH --label-column label --group-column recorder] [--seeds 3] [--out DIR]

Results: ``DIR/runs/<run id>/result.json`` (resumable), figures and tables in ``DIR/figures``, ``DIR/summary.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reprogram.experiment.catalogue import IMAGE_SYSTEMS
from reprogram.experiment.suite import script_main

NAME = "image"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the image-reprogramming experiment with command line ``argv``."""
    return script_main(NAME, IMAGE_SYSTEMS, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
