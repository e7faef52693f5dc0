"""Video-model reprogramming: the clip's spectrogram cut into time chunks that become frames, or one image
repeated (the baseline), each with a frequency and a linear label mapping, on ``offline:efficientnet_lite0_video``
(or ``--backbone video=torchvision:r3d_18``; repeat to compare several video models).

    python experiments/video.py [--data PATH --label-column label --group-column recorder] [--seeds 3] [--out DIR]

Results: ``DIR/runs/<run id>/result.json`` (resumable), figures and tables in ``DIR/figures``, ``DIR/summary.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reprogram.experiment.catalogue import VIDEO_SYSTEMS
from reprogram.experiment.suite import script_main

NAME = "video"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the video-reprogramming experiment with command line ``argv``."""
    return script_main(NAME, VIDEO_SYSTEMS, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
