"""Every modality and method on one task: image, video and speech programs, PEFT, probes and MFCC baselines.

The full comparison of the paper: the union of ``experiments/image.py``, ``video.py`` and ``speech.py`` plus both
MFCC baselines, on the same split, seeds and head family, so the table's paired comparisons are on shared
(seed, fold) units. For publication use cross-validation over groups::

    python experiments/compare.py --data manifest.csv --label-column label --group-column recorder \\
        --split group_kfold --folds all --seeds 3 --jobs 2 --out results/compare

Results: ``DIR/runs/<run id>/result.json`` (resumable), figures and tables in ``DIR/figures``, ``DIR/summary.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reprogram.experiment.catalogue import (
    BASELINE_SYSTEMS,
    IMAGE_SYSTEMS,
    PEFT_SYSTEMS,
    SPEECH_PROGRAM_SYSTEMS,
    SSL_SYSTEMS,
    VIDEO_SYSTEMS,
)
from reprogram.experiment.suite import script_main

NAME = "compare"
SYSTEMS = IMAGE_SYSTEMS + VIDEO_SYSTEMS + SPEECH_PROGRAM_SYSTEMS + PEFT_SYSTEMS + BASELINE_SYSTEMS + SSL_SYSTEMS


def main(argv: Sequence[str] | None = None) -> int:
    """Run the full comparison with command line ``argv``."""
    return script_main(NAME, SYSTEMS, argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
