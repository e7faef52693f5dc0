"""The few places where an architecture's attention departs from the generic path, keyed by ``config.model_type``.

Everything else in :mod:`reprogram.peft` is generic (the backbone names its projections and layers).
(WavLM's attention reads its projection weights directly, which would bypass LoRA; the speech wrappers
in :mod:`backbones.hf_speech` reroute it through the modules at construction, and the LoRA tests check
that the adapters are live on every family.) One departure matters here:

* WavLM's first layer computes a gated relative position bias of shape ``(B*H, T, T)`` that later layers
  reuse; prompt positions must get a bias of zero (:func:`relative_bias`), so the frames keep their mutual
  relative positions and the prompts carry no position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def model_type(model: nn.Module) -> str:
    """``config.model_type`` of a transformers model ('' when it has none)."""
    return str(getattr(getattr(model, "config", None), "model_type", ""))


def has_relative_bias(model: nn.Module) -> bool:
    """True when layers pass a shared relative position bias ``(B*H, T, T)`` along (WavLM)."""
    return model_type(model) == "wavlm"


def relative_bias(first_attention: nn.Module, batch: int, frames: int, num_prompts: int) -> torch.Tensor:
    """WavLM's relative position bias for ``frames`` frames, padded with zeros for ``num_prompts`` leading prompts.

    Returns:
        ``(B*H, P+T, P+T)``: the frames' block is exactly the unprompted model's bias.
    """
    bias = first_attention.compute_bias(frames, frames)  # (H, T, T)
    bias = F.pad(bias, (num_prompts, 0, num_prompts, 0))  # (H, P+T, P+T)
    return bias.unsqueeze(0).expand(batch, -1, -1, -1).reshape(-1, frames + num_prompts, frames + num_prompts)
