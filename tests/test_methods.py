"""Every METHODS entry builds from a config and satisfies the training loop's contract (tiny backbones)."""

from __future__ import annotations

import pytest
import torch

from reprogram.experiment.config import ConfigError, load_config
from reprogram.methods import METHODS, build

CLASSES = ["a", "b", "c"]
CASES = [
    ("program", "tiny:vit", 2, {"transform": "pad", "mapper": "linear"}),
    ("program", "tiny:hubert", 0.1, {"transform": "wave_embed", "mapper": "feature_linear"}),
    ("lora", "tiny:hubert", 2, {}),
    ("dora", "tiny:hubert", 2, {}),
    ("ia3", "tiny:hubert", None, {}),
    ("prompt", "tiny:hubert", 3, {}),
    ("deep_prompt", "tiny:hubert", 3, {}),
    ("adaption", "tiny:hubert", 3, {}),
    ("finetune", "tiny:hubert", None, {}),
    ("weighted_probe", "tiny:hubert", None, {}),
    ("attentive_probe", "tiny:hubert", None, {}),
]


@pytest.mark.parametrize(("method", "backbone", "budget", "options"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_model_methods_follow_the_loop_contract(method, backbone, budget, options):
    overrides = [f"method.name={method}", f"backbone.name={backbone}", "data.clip_seconds=0.25",
                 f"method.budget={'null' if budget is None else budget}"]
    config = load_config(None, overrides + [f"method.options.{k}={v}" for k, v in options.items()])
    built = build(config, CLASSES)
    assert built.model is not None and built.sample_rate > 0
    wave = torch.randn(2, int(built.sample_rate * config.data.clip_seconds))
    if hasattr(built.model, "start_epoch"):
        built.model.start_epoch([(wave, torch.tensor([0, 1]))], 0)
    logits = built.model(wave)
    assert logits.shape == (2, len(CLASSES))
    trainable = sum(p.numel() for p in built.model.parameters() if p.requires_grad)
    assert 0 < trainable < sum(p.numel() for p in built.model.parameters()) or method == "finetune"


def test_feature_methods_and_errors():
    mfcc = build(load_config(None, ["method.name=mfcc"]), CLASSES)
    assert mfcc.model is None and mfcc.features is not None
    probe = build(load_config(None, ["method.name=linear_probe", "backbone.name=tiny:hubert"]), CLASSES)
    assert probe.features is not None and probe.modality == "speech"
    with pytest.raises(KeyError, match="known methods"):
        build(load_config(None, ["method.name=nope"]), CLASSES)
    with pytest.raises(ValueError, match="no budget knob"):
        build(load_config(None, ["method.name=mfcc", "method.budget=3"]), CLASSES)
    with pytest.raises(ValueError, match="speech backbone"):
        build(load_config(None, ["method.name=lora", "backbone.name=tiny:vit"]), CLASSES)
    assert {"program", "lora", "prompt", "adaption", "linear_probe", "finetune", "mfcc"} <= set(METHODS.names())


@pytest.mark.parametrize("method", ["lora", "prompt", "finetune", "weighted_probe", "linear_probe"])
def test_methods_without_a_program_read_data_at_the_backbone_rate(method):
    """PEFT and probes feed the waveform straight to the encoder: the data must be at its rate, never another."""
    base = [f"method.name={method}", "backbone.name=tiny:hubert", "data.clip_seconds=0.25", "method.budget=null"]
    assert build(load_config(None, base), CLASSES).sample_rate == 16000
    assert build(load_config(None, base + ["data.sample_rate=16000"]), CLASSES).sample_rate == 16000
    with pytest.raises(ConfigError, match=r"data.sample_rate=8000.*data.sample_rate=null"):
        build(load_config(None, base + ["data.sample_rate=8000"]), CLASSES)


def test_seed_reaches_the_random_mapping_and_the_lowrank_init():
    """config.seed draws RandomMapping's assignment and LowRankProgram's V; an explicit option seed wins."""
    base = ["method.name=program", "backbone.name=tiny:vit", "method.budget=2", "method.options.transform=lowrank",
            "method.options.mapper=random", "data.clip_seconds=0.25"]

    def state(*extra):
        model = build(load_config(None, base + list(extra)), CLASSES).model
        return model.mapper.assignment.clone(), [p.detach().clone() for p in model.transform.parameters()]

    (a1, p1), (a2, p2) = state("seed=1"), state("seed=2")
    assert not torch.equal(a1, a2)
    assert any(not torch.equal(x, y) for x, y in zip(p1, p2, strict=True))
    a3, _ = state("seed=2", "method.options.mapper_options.seed=1")
    assert torch.equal(a3, a1)


@pytest.mark.parametrize("method", ["prompt", "deep_prompt"])
def test_prompt_tuning_starts_from_unprompted_frames(method):
    """As in benchmarks/peft_speech.py: every prompt vector is a frame of the plain model on training clips,
    and the prompts stay attached afterwards."""
    import backbones

    config = load_config(None, [f"method.name={method}", "backbone.name=tiny:hubert", "method.budget=3", "seed=4"])
    built = build(config, CLASSES)
    g = torch.Generator().manual_seed(0)
    clips = [(0.1 * torch.randn(4000, generator=g), 0) for _ in range(3)]
    plain = backbones.create("tiny:hubert").eval()
    with torch.no_grad():
        reference = plain(torch.stack([c[0] for c in clips]))  # the unprompted model (same tiny weights)
        prompted_before = built.model.backbone(clips[0][0][None]).features
    built.prepare(clips)
    prompts = getattr(built.model.backbone, f"peft_{method}").prompts.detach()  # (P, D) or (L, P, D)
    for layer, rows in enumerate(prompts if method == "deep_prompt" else prompts[None]):
        frames = reference.hidden_states[layer].reshape(-1, rows.shape[-1])  # (B*T, D)
        assert all(torch.isclose(frames, row, atol=1e-5).all(-1).any() for row in rows)
    with torch.no_grad():
        prompted_after = built.model.backbone(clips[0][0][None]).features
    assert not torch.allclose(prompted_after, reference.features[:1], atol=1e-4)  # the prompts still act
    assert not torch.allclose(prompted_after, prompted_before)  # the prompts changed
