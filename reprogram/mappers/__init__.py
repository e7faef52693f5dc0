"""Label mappers and heads: backbone outputs -> ``(B, K)`` target logits.

``MAPPERS.create(name, backbone=backbone, num_targets=K, **options)`` builds one (S is read from the
backbone's spec). A new mapper is one module plus one registration line below.

==================  ===============================================================  ===================
name                what                                                             reads
==================  ===============================================================  ===================
``random``          fixed random many-to-one (Elsayed et al. 2018)                    source logits
``flm``             frequency label mapping, fitted once (Chen et al. 2023)          source logits
``ilm``             iterative label mapping, re-fitted every epoch (Chen et al.)     source logits
``linear``          learned linear map of the source logits                          source logits
``semantic``        CLIP text embeddings of class descriptions (zero-shot head)      image features
``feature_linear``  linear head on pooled features (backbones without labels)        features
==================  ===============================================================  ===================
"""

from __future__ import annotations

from reprogram.mappers.base import LabelMapper
from reprogram.mappers.frequency import FrequencyMapping, IterativeMapping, NotFittedError, RandomMapping
from reprogram.mappers.linear import FeatureHead, LinearMapping
from reprogram.mappers.semantic import SemanticMapping
from reprogram.registry import Registry

MAPPERS: Registry[LabelMapper] = Registry("mapper")

MAPPERS.register("random", RandomMapping.from_backbone)
MAPPERS.register("flm", FrequencyMapping.from_backbone)
MAPPERS.register("ilm", IterativeMapping.from_backbone)
MAPPERS.register("linear", LinearMapping.from_backbone)
MAPPERS.register("semantic", SemanticMapping.from_backbone)
MAPPERS.register("feature_linear", FeatureHead.from_backbone)


def create(name: str, backbone, num_targets: int, **options) -> LabelMapper:
    """Build the mapper ``name`` for ``backbone`` and K = ``num_targets`` classes."""
    return MAPPERS.create(name, backbone=backbone, num_targets=num_targets, **options)


__all__ = [
    "MAPPERS",
    "LabelMapper",
    "RandomMapping",
    "FrequencyMapping",
    "IterativeMapping",
    "LinearMapping",
    "FeatureHead",
    "SemanticMapping",
    "NotFittedError",
    "create",
]
