"""Full fine-tuning, the upper reference: every transformer weight trains.

Following common practice for self-supervised speech encoders (wav2vec 2.0, HuBERT fine-tuning recipes),
the convolutional feature encoder stays frozen by default when the model offers ``freeze_feature_encoder()``
(the wav2vec2 family); Whisper's convolutional front end has no such switch and trains with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

from backbones.base import Backbone
from reprogram.peft.base import PeftConfig, PeftMethod


@dataclass
class FinetuneConfig(PeftConfig):
    """Full fine-tuning.

    Args:
        freeze_feature_encoder: keep the convolutional waveform encoder frozen where the model supports it.
    """

    method = "finetune"
    freeze_feature_encoder: bool = True


class FullFinetune(PeftMethod):
    """Calls ``backbone.unfreeze()`` (so ``.train()`` behaves as in plain PyTorch, dropout included)."""

    config_class = FinetuneConfig

    def _attach(self, backbone: Backbone) -> None:
        backbone.unfreeze()
        freeze = getattr(backbone.model, "freeze_feature_encoder", None)
        if self.config.freeze_feature_encoder and callable(freeze):
            freeze()


def build(backbone: Backbone, **options) -> FullFinetune:
    """Unfreeze ``backbone`` for full fine-tuning with :class:`FinetuneConfig` ``options``."""
    return FullFinetune(backbone, FinetuneConfig.from_dict(options))
