"""Model-path options (reprogram.runtime.accel): each leaves outputs and gradients unchanged, and does what it says."""

from __future__ import annotations

import contextlib
import copy
import os

import pytest
import torch
from torch import nn

from backbones import registry
from reprogram import mappers, transforms
from reprogram.mappers.heads import LinearHead, SpeechClassifier
from reprogram.methods.program import ReprogrammedModel
from reprogram.peft import apply
from reprogram.runtime.accel import (
    AccelConfig,
    apply_accel,
    assert_no_frozen_grads,
    autocast_context,
    enable_checkpointing,
    frozen_grad_problems,
    grad_scaler,
)
from tests import numerics

RATE = 16000


def image_model(name: str) -> ReprogrammedModel:
    torch.manual_seed(0)
    backbone = registry.create(name)
    program = transforms.create("pad", backbone.spec, sample_rate=RATE)
    with torch.no_grad():  # a non-neutral program, so gradients and outputs are not trivially equal
        for p in program.parameters():
            p.normal_(0, 0.1)
    return ReprogrammedModel(program, backbone, mappers.create("linear", backbone, 3))


def speech_model(name: str, method: str | None = "lora", **options) -> SpeechClassifier:
    torch.manual_seed(0)
    backbone = registry.create(name)
    if method is not None:
        apply(backbone, method, **options)
        with torch.no_grad():  # LoRA's B starts at zero: make the adapter live so its gradients are informative
            for p in backbone.parameters():
                if p.requires_grad:
                    p.normal_(0, 0.05)
    return SpeechClassifier(backbone, LinearHead(backbone.hidden_size, 3))


def wave(batch: int = 2, seconds: float = 1.0, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, int(seconds * RATE), generator=g) * 0.1  # (B, N)


def step(model: nn.Module, x: torch.Tensor, ctx=None, input_grad: bool = True):
    """Outputs, the input's gradient (zeros when ``input_grad`` is False) and every trainable parameter's
    gradient of one forward + backward."""
    model.train()
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(input_grad)
    with ctx or contextlib.nullcontext():
        out = model(x)  # (B, K)
    out.float().square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad and p.grad is not None}
    return out.detach().float(), x.grad.clone() if input_grad else torch.zeros(()), grads


def close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> None:
    """``|a - b| <= tol * |b|`` in the L2 norm (float sums in another order differ per element, not in norm)."""
    err = float((a - b).norm() / b.norm().clamp_min(1e-12))
    assert err <= tol, f"{what}: relative error {err:.2e} > {tol:.0e}"


def assert_same_step(a, b, tol: float = 1e-4, input_tol: float | None = None) -> None:
    close(a[0], b[0], tol, "outputs")
    close(a[1], b[1], tol if input_tol is None else input_tol, "input gradient")
    assert a[2].keys() == b[2].keys() and a[2]
    for n in a[2]:
        close(a[2][n], b[2][n], tol, f"gradient of {n}")


def saved_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of tensors autograd keeps for the backward pass during one forward."""
    total = 0

    def pack(t: torch.Tensor):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x.clone().requires_grad_(True))
    return total


def test_config_validation():
    assert AccelConfig(compile=True).compile == "default"
    assert AccelConfig(compile=False).compile == "off"
    assert AccelConfig(compile="true").compile == "default"
    for bad in ({"compile": "fast"}, {"autocast": "fp8"}, {"checkpointing": "yes"}):
        with pytest.raises(ValueError, match="AccelConfig"):
            AccelConfig(**bad)
    assert AccelConfig(autocast="bf16").to_dict()["autocast"] == "bf16"


def test_autocast_context_per_device():
    assert isinstance(autocast_context(AccelConfig(), "cpu"), contextlib.nullcontext)
    ctx = autocast_context(AccelConfig(autocast="bf16"), "cpu")
    with ctx:
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp16.*CUDA"):
        autocast_context(AccelConfig(autocast="fp16"), "cpu")
    with pytest.raises(ValueError, match="reduce-overhead"):
        apply_accel(nn.Linear(2, 2), AccelConfig(compile="reduce-overhead"), "cpu")
    assert not grad_scaler(AccelConfig(autocast="bf16"), "cpu").is_enabled()


@pytest.mark.numerics
def test_bf16_autocast_close_on_tiny_twin():
    model = speech_model("tiny:whisper")
    x = wave()
    ref = step(model, x)
    cast = step(model, x, autocast_context(AccelConfig(autocast="bf16"), "cpu"))
    # autocast rounds each Linear / Conv layer's operands to bf16 (8 mantissa bits) and accumulates in float32,
    # so each of the L layers adds ~eps(bf16) relative error: L * eps forward, again as much in the backward
    depth, _ = numerics.chain_size(model)
    bound = depth * numerics.eps(torch.bfloat16)
    assert numerics.rel_error(cast[0], ref[0]) <= bound, (numerics.rel_error(cast[0], ref[0]), bound)
    assert numerics.rel_error(cast[1], ref[1]) <= 2 * bound, (numerics.rel_error(cast[1], ref[1]), 2 * bound)


def backbone_step(model: ReprogrammedModel, image: torch.Tensor):
    """Outputs ``(B, K)``, the gradient of the backbone's input ``image`` ``(B, C, [T,] H, W)`` and the mapper's
    parameter gradients of one forward + backward through backbone and mapper (what channels-last changes)."""
    model.train()
    model.zero_grad(set_to_none=True)
    image = image.clone().requires_grad_(True)
    out = model.mapper(model.mapper_input(model.backbone(image)))  # (B, K)
    out.square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.mapper.named_parameters() if p.grad is not None}
    return out.detach(), image.grad.clone(), grads


@pytest.mark.numerics
@pytest.mark.parametrize("name, fmt", [("offline:efficientnet_lite0", torch.channels_last),
                                       ("tiny:r3d", torch.channels_last_3d)])
def test_channels_last_same_outputs_and_gradients(name, fmt):
    model = image_model(name) if name.startswith("offline") else video_model(name)
    x = wave()
    fast = apply_accel(copy.deepcopy(model), AccelConfig(channels_last=True), "cpu")
    conv = next(m for m in fast.backbone.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.kernel_size[-1] > 1)
    assert conv.weight.is_contiguous(memory_format=fmt)
    # the whole model trains in the new layout (program gradients included)
    assert step(fast, x)[2].keys() == step(model, x)[2].keys()
    # channels-last converts only the backbone, so outputs, the gradient of the backbone's input (which the program's
    # gradients are a fixed function of) and the mapper's gradients say whether it changed the maths
    with torch.no_grad():
        image = model.transform(x)  # (B, C, [T,] H, W)
    depth, k = numerics.chain_size(model.backbone, model.mapper)
    tol32, tol64 = (numerics.chain_tol(dt, depth, k) for dt in (torch.float32, torch.float64))
    exact_model = copy.deepcopy(model).double()
    with numerics.kink_bound(exact_model, tol32) as kinks:
        exact = backbone_step(exact_model, image.double())
    # float64: the channels-last path computes the same function and gradients, to float64 rounding
    fast64 = backbone_step(apply_accel(copy.deepcopy(model).double(), AccelConfig(channels_last=True), "cpu"),
                           image.double())
    for what, got, want in flat_steps(fast64, exact):
        assert numerics.rel_error(got, want) <= tol64, (what, numerics.rel_error(got, want), tol64)
    # float32, either layout: within float32's error of the exact result. Only the input gradient flows back
    # through the ReLU(6) kinks, whose float32 flips add up to kinks[0] (measured in float64, see tests/numerics.py)
    for layout, m in (("default", model), ("channels_last", fast)):
        for what, got, want in flat_steps(backbone_step(m, image), exact):
            bound = tol32 + (kinks[0] if what == "input gradient" else 0.0)
            err = numerics.rel_error(got, want)
            assert err <= bound, f"{layout} {what}: relative error {err:.2e} > {bound:.2e} (L={depth}, k={k})"


def flat_steps(a, b):
    """``(what, a's tensor, b's tensor)`` for outputs, input gradient and each parameter gradient of two steps."""
    assert a[2].keys() == b[2].keys() and a[2]
    yield "outputs", a[0], b[0]
    yield "input gradient", a[1], b[1]
    for n in a[2]:
        yield f"gradient of {n}", a[2][n], b[2][n]


def video_model(name: str) -> ReprogrammedModel:
    torch.manual_seed(0)
    backbone = registry.create(name)
    program = transforms.create("video", backbone.spec, sample_rate=RATE)
    return ReprogrammedModel(program, backbone, mappers.create("linear", backbone, 3))


def test_channels_last_skips_speech_and_vit():
    for model in (speech_model("tiny:hubert"), image_model("tiny:vit")):
        before = {n: p.stride() for n, p in model.named_parameters()}
        apply_accel(model, AccelConfig(channels_last=True), "cpu")
        assert before == {n: p.stride() for n, p in model.named_parameters()}


CHECKPOINT_CASES = [
    ("tiny:whisper", "lora"),
    ("tiny:hubert", "lora"),
    ("tiny:wavlm", "lora"),
    ("tiny:wav2vec2", None),
    ("tiny:ast", None),
    ("tiny:vit", None),
    ("tiny:clip", None),
    ("tiny:r3d", None),
    ("offline:efficientnet_lite0", None),
]


def build_case(name: str, method: str | None) -> nn.Module:
    if name in ("tiny:ast",):
        torch.manual_seed(0)
        backbone = registry.create(name)
        program = transforms.create("wave_additive", backbone.spec, sample_rate=RATE, clip_seconds=1.0)
        return ReprogrammedModel(program, backbone, mappers.create("linear", backbone, 3))
    if name in ("tiny:vit", "tiny:clip", "offline:efficientnet_lite0"):
        return image_model(name)
    if name == "tiny:r3d":
        return video_model(name)
    return speech_model(name, method)


@pytest.mark.parametrize("name, method", CHECKPOINT_CASES)
def test_checkpointing_same_gradients_less_memory(name, method):
    model = build_case(name, method)
    x = wave()
    ref, ref_bytes = step(model, x), saved_bytes(model, x)
    ckpt = apply_accel(copy.deepcopy(model), AccelConfig(checkpointing=True), "cpu")
    assert_same_step(step(ckpt, x), ref, tol=1e-6)
    # activations inside the blocks are no longer kept (without checkpointing the count is identical); in the
    # tiny Whisper and AST twins most of what remains is the full-rate STFT / filterbank front end
    assert saved_bytes(ckpt, x) < {"tiny:whisper": 0.9, "tiny:ast": 0.95}.get(name, 0.8) * ref_bytes
    if method == "lora":
        assert any("lora_B" in n for n in ref[2])  # LoRA weights inside checkpointed blocks get gradients
    assert_no_frozen_grads(ckpt)


def test_checkpointing_and_prompt_tuning_order():
    late = speech_model("tiny:whisper", "prompt", length=2)
    with pytest.raises(ValueError, match="before attaching prompt"):
        enable_checkpointing(late.backbone)
    ref = speech_model("tiny:whisper", "prompt", length=2)
    torch.manual_seed(0)
    backbone = registry.create("tiny:whisper")
    assert "GradientCheckpointingLayer" in enable_checkpointing(backbone)
    apply(backbone, "prompt", length=2)
    early = SpeechClassifier(backbone, LinearHead(backbone.hidden_size, 3))
    early.load_state_dict(ref.state_dict())
    x = wave()
    assert_same_step(step(early, x), step(ref, x), tol=1e-6)


def test_checkpointing_without_blocks_is_a_clear_error():
    torch.manual_seed(0)
    backbone = registry.create("tiny:vggish")
    with pytest.raises(ValueError, match="checkpointing=false"):
        enable_checkpointing(backbone)


def test_frozen_grad_check_catches_leaks():
    model = speech_model("tiny:hubert")
    step(model, wave())
    assert frozen_grad_problems(model) == []
    weight = model.backbone.model.encoder.layers[0].feed_forward.output_dense.weight
    weight.requires_grad_(True)  # a bug: a frozen weight made trainable
    with pytest.raises(AssertionError, match="output_dense.weight"):
        assert_no_frozen_grads(model)
    weight.requires_grad_(False)
    weight.grad = torch.zeros_like(weight)  # a bug: a gradient left on a frozen weight
    with pytest.raises(AssertionError, match="holds .grad"):
        assert_no_frozen_grads(model)
    weight.grad = None
    full = speech_model("tiny:hubert", "finetune")  # full fine-tuning: the backbone is meant to train
    step(full, wave(), input_grad=False)
    assert_no_frozen_grads(full)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("REPROGRAM_TEST_COMPILE") != "1",
                    reason="inductor compilation takes 1-5 min on 2 busy cores; set REPROGRAM_TEST_COMPILE=1 to run")
def test_compile_same_outputs_on_tiny_twin():
    model = speech_model("tiny:whisper")
    x = wave(seconds=0.5)
    ref = step(model, x)
    compiled = apply_accel(copy.deepcopy(model), AccelConfig(compile="default"), "cpu")
    assert_same_step(step(compiled, x), ref, tol=1e-4)
    assert_same_step(step(compiled, x), ref, tol=1e-4)  # second call: the cached graph
