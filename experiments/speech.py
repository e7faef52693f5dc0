"""Speech-model reprogramming against parameter-efficient fine-tuning of the same encoder.

Waveform programs (the clip inside a learned universal waveform; a bounded additive waveform) with a linear
head, and the PEFT methods on the same frozen encoder and head family: LoRA, DoRA, IA3, shallow and deep
prompt tuning, attention prompting (adaption), full fine-tuning (the upper reference), linear, weighted-sum
and attentive probes; the MFCC baseline as the classical peer. Default encoder ``offline:whisper_tiny_en``
(or ``--backbone speech=hf:facebook/hubert-base-ls960``; repeat to compare several).

    python experiments/speech.py [--data PATH --label-column label --group-column recorder] [--seeds 3] [--out DIR]

Results: ``DIR/runs/<run id>/result.json`` (resumable), figures and tables in ``DIR/figures``, ``DIR/summary.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from reprogram.experiment.catalogue import BASELINE_SYSTEMS, PEFT_SYSTEMS, SPEECH_PROGRAM_SYSTEMS
from reprogram.experiment.suite import script_main

NAME = "speech"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the speech experiment (programs and PEFT) with command line ``argv``."""
    return script_main(NAME, SPEECH_PROGRAM_SYSTEMS + PEFT_SYSTEMS + BASELINE_SYSTEMS[:1], argv, __doc__)


if __name__ == "__main__":
    sys.exit(main())
