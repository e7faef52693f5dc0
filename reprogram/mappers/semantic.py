"""Semantic label mapping through CLIP text embeddings of class descriptions (zero-shot head).

``out = scale * normalise(features) @ normalise(text(descriptions)).T``: the image features of a CLIP-style
backbone are compared with the text embeddings of one description per target class ("a spectrogram of a
gibbon duet", ...). With ``trainable=False`` the mapping has no parameters (the program alone adapts, as in
CLIP visual prompting, Bahng et al. 2022); with ``trainable=True`` the class embeddings start from the text
and are fine-tuned (``K*D`` parameters).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reprogram.mappers.base import LabelMapper


class SemanticMapping(LabelMapper):
    """Cosine similarity of features with per-class text embeddings.

    Args:
        class_embeddings: ``(K, D)`` text embeddings of the class descriptions.
        scale: logit scale (CLIP's learned temperature, e.g. 100).
        trainable: fine-tune the class embeddings.
    """

    input_kind = "features"

    def __init__(self, class_embeddings: torch.Tensor, scale: float = 100.0, trainable: bool = False) -> None:
        super().__init__(class_embeddings.shape[1], class_embeddings.shape[0])
        emb = F.normalize(class_embeddings.detach().float(), dim=-1)
        if trainable:
            self.classes = nn.Parameter(emb)
        else:
            self.register_buffer("classes", emb)
        self.scale = float(scale)

    @classmethod
    def from_backbone(
        cls,
        backbone: nn.Module,
        num_targets: int,
        descriptions: list[str] | None = None,
        class_names: list[str] | None = None,
        template: str = "a spectrogram of a {} call.",
        **options,
    ) -> SemanticMapping:
        """Embed one description per target class with the backbone's text encoder.

        Args:
            backbone: a backbone with ``text_embeddings(prompts) -> (K, D)`` (the open_clip family).
            num_targets: K.
            descriptions: K class descriptions, in class-index order (preferred: say what each class sounds
                or looks like).
            class_names: used with ``template`` when ``descriptions`` is not given.
            template: format string with ``{}`` for a class name.
            **options: ``scale`` (default: the backbone's own CLIP logit scale, else 100), ``trainable``.
        """
        if descriptions is None and class_names is not None:
            descriptions = [template.format(str(name).replace("_", " ")) for name in class_names]
        name = getattr(backbone, "name", type(backbone).__name__)
        if not hasattr(backbone, "text_embeddings"):
            raise ValueError(f"backbone {name!r} has no text encoder; semantic mapping needs an open_clip backbone")
        if descriptions is None or len(descriptions) != num_targets:
            got = "none" if descriptions is None else len(descriptions)
            raise ValueError(
                f"semantic mapping needs one description per class ({num_targets}), got {got}; "
                "pass descriptions=['a spectrogram of a gibbon duet', ...] or class_names=[...]"
            )
        with torch.no_grad():
            emb = backbone.text_embeddings(list(descriptions))  # (K, D)
        clip_model = getattr(backbone, "model", None)
        if "scale" not in options and hasattr(clip_model, "logit_scale"):
            options["scale"] = float(clip_model.logit_scale.detach().exp())
        return cls(emb, **options)

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """Args: source: ``(B, D)`` image features. Returns: ``(B, K)``."""
        return self.scale * F.normalize(source, dim=-1) @ F.normalize(self.classes, dim=-1).T
