"""Heads on speech hidden states: shapes, masks respected, weighted-sum weights train, pooled path exact."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones.base import BackboneOutput
from reprogram.mappers.heads import AttentivePoolingHead, LinearHead, SpeechClassifier, WeightedSumHead, build_head

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def output() -> BackboneOutput:
    """tiny:whisper on a padded batch (so the mask is not None)."""
    b = backbones.create("tiny:whisper")
    x = 0.1 * torch.randn(3, 8000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = b(x, torch.tensor([8000, 5000, 3000]))
    assert out.mask is not None
    return out


def synthetic(batch=2, frames=6, width=8, layers=3, seed=0) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = [torch.randn(batch, frames, width, generator=g) for _ in range(layers)]
    mask = torch.ones(batch, frames, dtype=torch.bool)
    mask[1, 4:] = False
    return hidden, mask


@pytest.mark.parametrize("kind", ["linear", "weighted_sum", "attentive"])
def test_heads_map_backbone_output_to_logits(output, kind):
    head = build_head(kind, len(output.hidden_states), output.hidden_states[0].shape[-1], 4)
    logits = head(output)
    assert logits.shape == (3, 4) and torch.isfinite(logits).all()


@pytest.mark.parametrize("make", [
    lambda: LinearHead(8, 3), lambda: WeightedSumHead(3, 8, 3), lambda: AttentivePoolingHead(8, 3, 16),
])
def test_padded_frames_do_not_matter(make):
    head = make()
    hidden, mask = synthetic()
    changed = [h.clone() for h in hidden]
    for h in changed:
        h[1, 4:] = 1e3  # garbage in the padding
    torch.testing.assert_close(head(hidden, mask), head(changed, mask))
    assert not torch.allclose(head(hidden, None)[1], head(changed, None)[1])  # without the mask they would


def test_linear_head_is_masked_mean_then_linear():
    head = LinearHead(8, 3, layer=1)
    hidden, mask = synthetic()
    expected = head.linear(torch.stack([hidden[1][0].mean(0), hidden[1][1, :4].mean(0)]))
    torch.testing.assert_close(head(hidden, mask), expected)


def test_weighted_sum_weights_get_gradients_and_start_uniform(output):
    n = len(output.hidden_states)
    head = WeightedSumHead(n, output.hidden_states[0].shape[-1], 4)
    torch.testing.assert_close(head.layer_weights, torch.full((n,), 1 / n))
    torch.nn.functional.cross_entropy(head(output), torch.tensor([0, 1, 2])).backward()
    assert head.layer_logits.grad is not None and head.layer_logits.grad.abs().sum() > 0


def test_weighted_sum_on_pooled_features_is_exact():
    head = WeightedSumHead(3, 8, 3)
    with torch.no_grad():
        head.layer_logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    hidden, mask = synthetic()
    w = mask.float().unsqueeze(-1)
    pooled = torch.stack([(h * w).sum(1) / w.sum(1) for h in hidden], dim=1)  # (B, L, D)
    torch.testing.assert_close(head.forward_pooled(pooled), head(hidden, mask))


def test_attentive_pooling_weights_are_a_distribution_over_valid_frames():
    head = AttentivePoolingHead(8, 3, 16)
    hidden, mask = synthetic()
    _, weights = head.pool(hidden[-1], mask)
    torch.testing.assert_close(weights.sum(1), torch.ones(2))
    assert (weights[1, 4:] == 0).all()


def test_head_errors_name_the_fix(output):
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearHead(8, 1)
    with pytest.raises(KeyError, match="choose one of"):
        build_head("mlp", 3, 8, 2)
    with pytest.raises(ValueError, match="num_layers=backbone.spec.num_layers"):
        WeightedSumHead(7, output.hidden_states[0].shape[-1], 2)(output)
    with pytest.raises(ValueError, match="hidden states"):
        LinearHead(8, 2)(BackboneOutput(logits=None, features=torch.zeros(1, 8)))


def test_speech_classifier_trains_only_head_on_frozen_backbone():
    b = backbones.create("tiny:hubert")
    model = SpeechClassifier(b, WeightedSumHead(b.spec.num_layers, b.hidden_size, 3))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"head.layer_logits", "head.linear.weight", "head.linear.bias"}
    x = 0.1 * torch.randn(2, 4000, generator=torch.Generator().manual_seed(1))
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 2])).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
