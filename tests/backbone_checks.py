"""Shared invariant checks for any :class:`~backbones.base.Backbone` (tiny twins, offline models, test matrices).

Each check raises ``AssertionError`` naming the backbone and what broke. :func:`check_backbone` runs
them all. Losses use a fixed random projection of the outputs, not a plain sum: a sum of layer-normed
features is constant, so its gradient is zero even when the input is wired correctly.
"""

from __future__ import annotations

import torch
from torch import nn

from backbones.base import Backbone, BackboneOutput
from tests import numerics


def example_input(backbone: Backbone, batch: int = 2, seconds: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A seeded batch shaped for ``backbone.spec``: ``(B, N)`` waveforms of ``seconds``, or ``(B, *spec.shape)``."""
    g = torch.Generator().manual_seed(seed)
    spec = backbone.spec
    if spec.modality in ("speech", "audio"):
        n = spec.shape[0] if spec.shape[0] > 0 else int(seconds * spec.sample_rate)
        return 0.1 * torch.randn(batch, n, generator=g)
    return torch.randn(batch, *spec.shape, generator=g)


def projected_loss(out: BackboneOutput, seed: int = 1) -> torch.Tensor:
    """A scalar that depends on every output (features, logits, hidden states) through fixed random weights."""
    g = torch.Generator().manual_seed(seed)
    parts = [out.features] + ([out.logits] if out.logits is not None else [])
    parts += [h.mean(dim=1) for h in (out.hidden_states or ())]  # (B, D) per layer
    return sum((p * torch.randn(p.shape[-1], generator=g).to(p)).sum() for p in parts)


def check_output_shapes(backbone: Backbone, out: BackboneOutput, batch: int) -> None:
    """Outputs match ``spec``: features ``(B, D)``, logits ``(B, S)``, speech hidden states and mask; all finite."""
    spec, name = backbone.spec, backbone.name
    assert isinstance(out, BackboneOutput), f"{name}: forward must return BackboneOutput, got {type(out)}"
    assert out.features.shape == (batch, spec.feature_dim), f"{name}: features {tuple(out.features.shape)}"
    if spec.num_labels:
        assert out.logits is not None and out.logits.shape == (batch, spec.num_labels), f"{name}: logits shape"
    if spec.modality == "speech":
        assert out.hidden_states is not None and len(out.hidden_states) == spec.num_layers, f"{name}: hidden states"
        frames = out.hidden_states[0].shape[1]
        for h in out.hidden_states:
            assert h.shape == (batch, frames, spec.feature_dim), f"{name}: hidden state shape {tuple(h.shape)}"
        if out.mask is not None:
            assert out.mask.shape == (batch, frames) and out.mask.dtype == torch.bool, f"{name}: mask"
    for t in [out.features, out.logits, *(out.hidden_states or ())]:
        assert t is None or torch.isfinite(t).all(), f"{name}: non-finite output"


def check_frozen(backbone: Backbone) -> None:
    """No parameter requires grad."""
    trainable = [n for n, p in backbone.named_parameters() if p.requires_grad]
    assert not trainable, f"{backbone.name}: parameters require grad: {trainable[:5]}"


def check_train_cannot_unlock(backbone: Backbone, x: torch.Tensor) -> None:
    """``.train()`` on a wrapping module leaves every submodule in eval mode: outputs and buffers are unchanged."""
    wrapper = nn.ModuleDict({"backbone": backbone})
    backbone.eval()
    with torch.no_grad():
        reference = backbone(x).features
    buffers = {k: v.clone() for k, v in backbone.named_buffers()}
    wrapper.train()
    try:
        in_train = [n for n, m in backbone.named_modules() if n and m.training]
        assert not in_train, f"{backbone.name}: .train() unlocked {in_train[:5]}"
        with torch.no_grad():
            again = backbone(x).features
        numerics.assert_chain_close(again, reference, backbone, what=f"{backbone.name}: output in train()")
        for k, v in backbone.named_buffers():
            assert torch.equal(v, buffers[k]), f"{backbone.name}: buffer {k} changed in train mode"
    finally:
        wrapper.eval()


def check_gradient_and_weights(backbone: Backbone, x: torch.Tensor) -> torch.Tensor:
    """One optimizer step on an input-side parameter: the input gradient is finite and non-zero, and no weight moves.

    Returns:
        The gradient reaching the input-side parameter, shaped like ``x``.
    """
    before = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    program = nn.Parameter(torch.zeros_like(x))
    opt = torch.optim.Adam([program], lr=1e-2)
    loss = projected_loss(backbone(x + program))
    loss.backward()
    grad = program.grad.detach().clone()
    assert torch.isfinite(grad).all(), f"{backbone.name}: non-finite input gradient"
    assert grad.abs().sum() > 0, f"{backbone.name}: zero input gradient"
    opt.step()
    assert program.detach().abs().sum() > 0, f"{backbone.name}: the input-side parameter did not move"
    after = backbone.state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert not moved, f"{backbone.name}: backbone weights changed: {moved[:5]}"
    assert all(p.grad is None for p in backbone.parameters()), f"{backbone.name}: gradients reached frozen weights"
    return grad


def check_backbone(backbone: Backbone, x: torch.Tensor | None = None) -> BackboneOutput:
    """Run every invariant on ``backbone`` with input ``x`` (default: :func:`example_input`).

    Returns:
        The eval-mode output on ``x``.
    """
    x = example_input(backbone) if x is None else x
    check_frozen(backbone)
    out = backbone(x)
    check_output_shapes(backbone, out, x.shape[0])
    check_gradient_and_weights(backbone, x)
    check_train_cannot_unlock(backbone, x)
    check_frozen(backbone)
    return out
