"""backbones.split: upper(lower(x)) is the full forward, on tiny twins and the real offline Whisper tiny encoder,
for ragged (padded) batches too, with PEFT modules in the upper layers."""

from __future__ import annotations

import pytest
import torch

import backbones
from backbones.split import split_backbone
from reprogram import peft
from tests import numerics

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ("tiny:hubert", "tiny:wav2vec2", "tiny:wavlm", "tiny:whisper")


def _waves(backbone, seed: int = 0, seconds: float = 0.5, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    rate = backbone.spec.sample_rate
    n = int(seconds * rate)
    g = torch.Generator().manual_seed(seed)
    wave = torch.randn(batch, n, generator=g) * 0.1  # (B, N)
    lengths = torch.tensor([n, n * 3 // 4, n // 2][:batch])
    for i, m in enumerate(lengths.tolist()):
        wave[i, m:] = 0.0
    return wave, lengths


def _check(backbone, cut: int, wave: torch.Tensor, lengths: torch.Tensor | None) -> None:
    split = split_backbone(backbone, cut)
    with torch.no_grad():
        full = backbone(wave, lengths)
        hidden, mask = split.lower(wave, lengths)
        out = split.upper(hidden, mask)
    assert len(out.hidden_states) == len(full.hidden_states) == backbone.num_layers + 1
    assert all(h is None for h in out.hidden_states[:cut])
    if full.mask is None:
        assert mask is None and out.mask is None
    else:
        assert torch.equal(mask, full.mask)
    valid = torch.ones(full.hidden_states[-1].shape[:2], dtype=torch.bool) if full.mask is None else full.mask
    for i in range(cut, backbone.num_layers + 1):  # padded frames carry no meaning: compare valid ones
        numerics.assert_chain_close(out.hidden_states[i][valid], full.hidden_states[i][valid], backbone,
                                    what=f"{backbone.name} cut {cut} layer {i}")
    numerics.assert_chain_close(out.features, full.features, backbone, what=f"{backbone.name} cut {cut} features")


@pytest.mark.numerics
@pytest.mark.parametrize("name", TINY)
def test_upper_of_lower_is_the_full_forward_on_tiny_twins(name):
    backbone = backbones.create(name)
    wave, lengths = _waves(backbone)
    for cut in range(backbone.num_layers + 1):
        _check(backbone, cut, wave, None)
        _check(backbone, cut, wave, lengths)


@pytest.mark.parametrize("name", ("tiny:hubert", "tiny:wavlm", "tiny:whisper"))
def test_peft_modules_above_the_cut_act_in_upper(name):
    """Prompts (cut 0) and LoRA on the top layer (cut L-1) change the output, and upper reproduces it."""
    for method, options, cut in (("prompt", {"length": 3}, 0), ("lora", {"r": 2, "layers": (1,)}, 1)):
        backbone = backbones.create(name)
        plain = backbone(_waves(backbone)[0]).features
        peft.apply(backbone, method, **options)
        with torch.no_grad():
            for p in backbone.parameters():  # LoRA's B starts at 0 (no effect): make every adapter act
                if p.requires_grad:
                    p.add_(0.05 * torch.randn_like(p))
        wave, lengths = _waves(backbone)
        assert not torch.allclose(backbone(wave).features, plain, atol=1e-4), method
        _check(backbone, cut, wave, None)
        _check(backbone, cut, wave, lengths)


def test_gradient_reaches_upper_trainables_only_through_upper():
    backbone = backbones.create("tiny:hubert")
    handle = peft.apply(backbone, "prompt", length=2)
    split = split_backbone(backbone, 0)
    with torch.no_grad():
        hidden, mask = split.lower(_waves(backbone)[0])
    split.upper(hidden, mask).features.sum().backward()
    assert handle.prompts.grad is not None and handle.prompts.grad.abs().sum() > 0


def test_bad_cut_and_backbone_raise():
    backbone = backbones.create("tiny:whisper")
    with pytest.raises(ValueError, match="outside 0..2"):
        split_backbone(backbone, 3)
    with pytest.raises(ValueError, match="cannot be split"):
        split_backbone(backbones.create("tiny:vit"), 0)


def test_lower_modules_hold_only_the_cached_part():
    backbone = backbones.create("tiny:whisper")
    names = dict(split_backbone(backbone, 1).lower_modules().named_parameters())
    assert any(n.startswith("layer_0.") for n in names) and not any(n.startswith("layer_1.") for n in names)


def test_whisper_tiny_real_weights_split_equals_full():
    """offline:whisper_tiny_en (real weights): every cut on short clips, whole and ragged batches."""
    backbone = backbones.create("offline:whisper_tiny_en")
    wave, lengths = _waves(backbone, seconds=1.0)
    for cut in (0, 2, backbone.num_layers):
        _check(backbone, cut, wave, None)
        _check(backbone, cut, wave, lengths)
