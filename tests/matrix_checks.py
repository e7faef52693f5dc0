"""Shared invariant checks for a (transform, backbone, mapper) reprogramming case, in the spirit of peft's TEST_CASES.

Each check takes a built :class:`~reprogram.methods.program.ReprogrammedModel` and a batch and raises ``AssertionError``
with a message naming what broke. The closed-form parameter counts here are written independently of the
modules they check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from reprogram.methods.program import ReprogrammedModel
from reprogram.spec import InputSpec


@dataclass(frozen=True)
class Case:
    """One matrix entry.

    Attributes:
        transform: a ``TRANSFORMS`` name.
        backbone: a ``backbones`` name.
        mapper: a ``MAPPERS`` name.
        options: transform options (``budget`` ...), besides ``spec`` and ``sample_rate``.
        mapper_options: mapper options.
        batch: B; seconds: clip length; rate: the data's sample rate.
    """

    transform: str
    backbone: str
    mapper: str
    options: dict = field(default_factory=dict)
    mapper_options: dict = field(default_factory=dict)
    batch: int = 2
    seconds: float = 1.0
    rate: int = 16000

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()) if k != "clip_seconds")
        return f"{self.transform}[{extra}]-{self.backbone}-{self.mapper}"


def pad_count(c: int, h: int, w: int, p: int) -> int:
    return c * (h * w - (h - 2 * p) * (w - 2 * p))


def expected_program_parameters(case: Case, spec: InputSpec) -> int | None:
    """Closed-form trainable count of the case's program (``None`` when it has no closed form here)."""
    o, name = case.options, case.transform
    if name in ("wave_embed", "wave_additive"):
        secs = o.get("budget", 1.0) if name == "wave_embed" else o["clip_seconds"]
        return round(secs * spec.sample_rate)
    c, (h, w) = spec.channels, spec.height_width
    program = o.get("program", "pad") if name in ("video", "video_repeat") else name
    per_image = {
        "pad": lambda: pad_count(c, h, w, o["budget"]),
        "autovp": lambda: pad_count(c, h, w, o["budget"]) + 2 + (c + c),  # + log-scales + 1x1 colour map
        "full": lambda: c * h * w,
        "lowrank": lambda: c * o["budget"] * (h + w),
        "smm": lambda: (
            (c * 9 * o["budget"] + o["budget"])
            + (o["budget"] * 9 * 2 * o["budget"] + 2 * o["budget"])
            + (2 * o["budget"] * 9 * c + c)
            + c * h * w
        ),
    }.get(program)
    if per_image is None:
        return None
    copies = spec.frames if name == "video" and not o.get("share", True) else 1
    colour = c + c if o.get("colour") == "learned" else 0  # a 1x1 colour map (weight + bias), shared by frames
    return per_image() * copies + colour


def expected_mapper_parameters(case: Case, spec: InputSpec, num_targets: int) -> int:
    """Closed-form trainable count of the case's mapper or head."""
    if case.mapper == "linear":
        return spec.num_labels * num_targets + num_targets
    if case.mapper == "feature_linear":
        return spec.feature_dim * num_targets + num_targets
    if case.mapper == "semantic" and case.mapper_options.get("trainable"):
        return num_targets * spec.feature_dim
    return 0


def batch_for(case: Case, num_targets: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, N)`` waveforms (FM tones in noise, different per example) and ``(B,)`` targets."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(round(case.seconds * case.rate)) / case.rate
    f0 = 400 + 800 * torch.rand(case.batch, 1, generator=gen)
    wave = 0.3 * torch.sin(2 * math.pi * (f0 * t + 200 * t**2)) + 0.02 * torch.randn(
        case.batch, t.numel(), generator=gen
    )
    return wave, torch.arange(case.batch) % num_targets


def check_output_shape(model: ReprogrammedModel, wave: torch.Tensor) -> None:
    spec = model.backbone.spec
    x = model.transform(wave)
    want = (wave.shape[0], *spec.shape) if spec.shape[0] != -1 else (wave.shape[0], x.shape[-1])
    assert tuple(x.shape) == want, f"transform output {tuple(x.shape)} != spec {want}"
    out = model(wave)
    assert out.shape == (wave.shape[0], model.num_targets), f"model output {tuple(out.shape)}"
    assert torch.isfinite(out).all(), "non-finite logits"


def _grads(module: torch.nn.Module, what: str) -> float:
    """Total |grad| of ``module``'s trainable parameters; each must have a finite gradient."""
    total = 0.0
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{what} parameter {name} got no gradient (is it used?)"
        assert torch.isfinite(p.grad).all(), f"{what} parameter {name} has a non-finite gradient"
        total += float(p.grad.abs().sum())
    return total


def check_gradients(model: ReprogrammedModel, wave: torch.Tensor, target: torch.Tensor) -> None:
    """The program and the mapper get finite non-zero gradients; the backbone none at all."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(wave), target).backward()
    assert model.transform.trainable_parameters() > 0, "the program has no trainable parameters"
    assert _grads(model.transform, "program") > 0, "the program's gradient is zero: it would train nothing"
    if model.mapper.trainable_parameters():
        assert _grads(model.mapper, "mapper") > 0, "the mapper's gradient is zero"
    for name, p in model.backbone.named_parameters():
        assert not p.requires_grad, f"backbone parameter {name} requires grad"
        assert p.grad is None, f"backbone parameter {name} received a gradient"
    model.zero_grad(set_to_none=True)


def check_frozen_after_steps(model: ReprogrammedModel, wave: torch.Tensor, target: torch.Tensor, steps: int = 3):
    """A few optimizer steps in train mode move the program and leave every backbone tensor bit-identical."""
    frozen = {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}
    program = [p.detach().clone() for p in model.transform.parameters()]
    opt = torch.optim.Adam(list(model.trainable()), lr=1e-2)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(wave), target).backward()
        opt.step()
    model.eval()
    training = [n for n, m in model.backbone.named_modules() if m.training and n]
    assert not training, f"backbone submodules left in train mode: {training[:3]}"
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, frozen[k]), f"backbone tensor {k} changed during training"
    moved = any(not torch.equal(a, b.detach()) for a, b in zip(program, model.transform.parameters(), strict=True))
    assert moved, "no program parameter moved after the optimizer steps"


def check_neutral(model: ReprogrammedModel, wave: torch.Tensor) -> None:
    """At initialisation the program's output equals the plain front end's, and so do the backbone outputs."""
    t = model.transform
    with torch.no_grad():
        x, ref = t(wave), t.plain(wave)
        out, plain = model.backbone(x), model.backbone(ref)
    if getattr(t, "exact_neutral", True):
        assert torch.equal(x, ref), "neutral program changes the input"
        assert torch.equal(out.features, plain.features), "neutral program changes the backbone features"
        if out.logits is not None:
            assert torch.equal(out.logits, plain.logits), "neutral program changes the backbone logits"
    else:  # learned resampling grids reproduce the placement up to float rounding
        torch.testing.assert_close(x, ref, atol=1e-4, rtol=0)
        torch.testing.assert_close(out.features, plain.features, atol=1e-3, rtol=1e-3)


def check_budget(model: ReprogrammedModel, case: Case) -> dict:
    """Measured counts equal the closed forms; the backbone contributes nothing."""
    spec, k = model.backbone.spec, model.num_targets
    b = model.budget()
    want = expected_program_parameters(case, spec)
    if want is not None:
        assert b["program"] == want, f"program has {b['program']} parameters, closed form says {want}"
    kind = "head" if model.mapper.input_kind == "features" else "mapper"
    assert b[kind] == expected_mapper_parameters(case, spec, k), f"{kind}: {b[kind]}"
    assert b["backbone"] == 0, f"{b['backbone']} backbone parameters are trainable"
    assert b["total"] == b["program"] + b["mapper"] + b["head"]
    assert isinstance(b["budget_doc"], str) and b["budget_doc"] != "no budget knob"
    return b
