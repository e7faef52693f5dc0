"""Cross-modal reprogramming and parameter-efficient fine-tuning of frozen models for bioacoustics.

The data's way through the toolkit::

    recordings + table        reprogram.data        -> (B, N) waveforms at the backbone's rate
    input transform           reprogram.transforms  -> (B, *spec.shape) in the backbone's input space
    frozen backbone           backbones             -> source logits / features / hidden states
    label mapper / head       reprogram.mappers     -> (B, K) target-class logits
"""

from reprogram.spec import InputSpec

__all__ = ["InputSpec"]
__version__ = "0.1.0"
