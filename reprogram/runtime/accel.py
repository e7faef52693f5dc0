"""Model-path options: channels-last, ``torch.compile``, autocast and activation checkpointing of the frozen backbone.

One small config (:class:`AccelConfig`) and three entry points the training loop calls::

    model = apply_accel(model, config, device)         # once, after model.to(device)
    with autocast_context(config, device):             # around forward + loss
        loss = loss_fn(model(wave), target)
    scaler.scale(loss).backward()                      # scaler = grad_scaler(config, device): fp16 only
    assert_no_frozen_grads(model)                      # the frozen base never holds a gradient

Every option leaves the function computed unchanged (within float tolerance; exactly for checkpointing,
which recomputes the same ops) and the state-dict names unchanged (compile is applied in place with
:meth:`torch.nn.Module.compile`, checkpointing patches instance ``forward`` s), so checkpoints are portable
between runs with and without acceleration.

Attention: every attention backbone already runs PyTorch's fused ``scaled_dot_product_attention`` (SDPA):

==========================================  =================================================================
family                                      attention path
==========================================  =================================================================
``hf:`` / ``tiny:`` HuBERT, wav2vec 2.0     transformers ``attn_implementation="sdpa"`` (hf_hub default)
``hf:`` / ``offline:`` Whisper encoder      transformers ``sdpa`` (the default of transformers 5)
``hf:`` / ``tiny:`` AST                     transformers ``sdpa``
``hf:`` / ``tiny:`` WavLM                   config says ``eager`` (transformers has no WavLM SDPA); the
                                            backbone reroutes it through its own SDPA call
                                            (:func:`backbones.hf_speech.route_projections_through_modules`)
``timm:`` ViTs                              timm ``Attention.fused_attn`` (``F.scaled_dot_product_attention``)
``open_clip:``                              ``nn.MultiheadAttention`` (``need_weights=False``: SDPA inside)
convnets (EfficientNet, R3D, VGGish, CREPE) no attention
==========================================  =================================================================
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from backbones.base import TRAINABLE_TAG, Backbone

log = logging.getLogger(__name__)

COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
AUTOCAST = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class AccelConfig:
    """Model-path acceleration options (all off by default: the reference numerics).

    Args:
        channels_last: convert image / video convnet backbones (and their inputs) to channels-last memory
            format, which oneDNN (CPU) and cuDNN (GPU) convolutions run faster; ignored for speech / ViT backbones
            whose compute is not in 2-D / 3-D convolutions.
        compile: ``torch.compile`` the backbone: ``"off"``, ``"default"`` or another ``torch.compile`` mode
            (``"reduce-overhead"``, ``"max-autotune"``, ``"max-autotune-no-cudagraphs"``); ``True`` / ``False``
            are accepted for ``"default"`` / ``"off"``.
        autocast: ``"off"``, ``"bf16"`` or ``"fp16"`` mixed precision in the forward pass. GPU: both
            (fp16 with a gradient scaler, :func:`grad_scaler`); CPU: ``"bf16"`` only.
        checkpointing: activation checkpointing of the frozen backbone's blocks (recompute in the backward
            pass instead of storing activations: less memory, about one more forward of time).
    """

    channels_last: bool = False
    compile: str = "off"
    autocast: str = "off"
    checkpointing: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):
            self.compile = "default" if self.compile else "off"
        if isinstance(self.compile, str) and self.compile.lower() in ("true", "false"):
            self.compile = "default" if self.compile.lower() == "true" else "off"
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"AccelConfig.compile={self.compile!r} unknown; use one of {COMPILE_MODES} (or a bool)")
        if self.autocast not in AUTOCAST:
            raise ValueError(f"AccelConfig.autocast={self.autocast!r} unknown; use 'off', 'bf16' or 'fp16'")
        for name in ("channels_last", "checkpointing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"AccelConfig.{name}={getattr(self, name)!r}: use true or false")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_training(cls, training) -> AccelConfig:
        """The options of a ``TrainingConfig`` (``training.channels_last`` / ``compile`` / ``autocast`` /
        ``checkpointing``)."""
        return cls(training.channels_last, training.compile, training.autocast, training.checkpointing)

    @property
    def enabled(self) -> bool:
        """Whether any option changes the eager fp32 forward (compile, autocast, checkpointing, channels-last)."""
        return self.compile != "off" or self.autocast != "off" or self.checkpointing or self.channels_last


def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def check_device(config: AccelConfig, device: str | torch.device) -> None:
    """Raise ``ValueError`` when ``config`` asks for something ``device`` cannot do."""
    kind = _device_type(device)
    if config.autocast == "fp16" and kind != "cuda":
        raise ValueError(f"autocast='fp16' needs a CUDA device (got {device!r}); use autocast='bf16' on CPU or 'off'")
    if config.autocast != "off" and kind not in ("cuda", "cpu"):
        raise ValueError(f"autocast={config.autocast!r} is supported on cuda and cpu, not {device!r}; use 'off'")
    if config.compile == "reduce-overhead" and kind != "cuda":
        raise ValueError("compile='reduce-overhead' uses CUDA graphs; on CPU use compile='default'")


def autocast_context(config: AccelConfig, device: str | torch.device) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for the forward pass (and loss) when asked, else a no-op context.

    Args:
        config: the options (``autocast`` field).
        device: where the model runs (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """
    check_device(config, device)
    dtype = AUTOCAST[config.autocast]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=_device_type(device), dtype=dtype)


def cuda_defaults(device: str | torch.device) -> bool:
    """On CUDA, let fp32 matmuls and convolutions use TF32 tensor cores (``torch.set_float32_matmul_precision
    ("high")``, ``cudnn.allow_tf32``): about 10 bits of mantissa in the products, fp32 accumulation. Off with
    ``REPROGRAM_TF32=0`` (full fp32). Other devices are left untouched.

    Returns:
        Whether TF32 was turned on.
    """
    if _device_type(device) != "cuda" or os.environ.get("REPROGRAM_TF32", "1") == "0":
        return False
    torch.set_float32_matmul_precision("high")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    return True


def grad_scaler(config: AccelConfig, device: str | torch.device) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for fp16 autocast (bf16 has fp32's range and needs none).

    Use: ``scaler.scale(loss).backward(); scaler.unscale_(opt)`` (before clipping); ``scaler.step(opt);
    scaler.update()``. When disabled these calls are the plain ``backward`` / ``step``.
    """
    check_device(config, device)
    return torch.amp.GradScaler(_device_type(device), enabled=config.autocast == "fp16")


# ----------------------------------------------------------------------------------------------- model surgery


def find_backbone(model: nn.Module) -> Backbone | None:
    """The (outermost) frozen :class:`~backbones.base.Backbone` inside ``model`` (``model`` itself if it is one)."""
    for module in model.modules():
        if isinstance(module, Backbone):
            return module
    return None


def conv_dims(module: nn.Module) -> int:
    """2 or 3 when ``module`` is mostly a 2-D / 3-D convnet (more than one such conv: a ViT's patch embedding
    alone does not count), else 0."""
    n2 = sum(isinstance(m, nn.Conv2d) for m in module.modules())
    n3 = sum(isinstance(m, nn.Conv3d) for m in module.modules())
    if max(n2, n3) <= 1:
        return 0
    return 3 if n3 > n2 else 2


def _to_memory_format(fmt: torch.memory_format, dims: int):
    def hook(_module: nn.Module, args: tuple):
        if args and isinstance(args[0], torch.Tensor) and args[0].dim() == dims + 2:
            return (args[0].contiguous(memory_format=fmt), *args[1:])
        return None

    return hook


def enable_channels_last(backbone: nn.Module) -> bool:
    """Channels-last weights and inputs for a 2-D / 3-D convnet backbone.

    Returns:
        Whether the backbone was converted (False for speech encoders, ViTs and other non-conv backbones).
    """
    dims = conv_dims(backbone)
    if dims == 0:
        return False
    fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
    backbone.to(memory_format=fmt)  # converts 4-D (or 5-D) parameters and buffers
    backbone.register_forward_pre_hook(_to_memory_format(fmt, dims))
    return True


def _checkpointed_forward(original, *args, **kwargs):
    if not torch.is_grad_enabled():  # evaluation: nothing to save, nothing to recompute
        return original(*args, **kwargs)
    # non-reentrant: gradients reach inputs and trainable modules inside the block although the block's own
    # weights are frozen (the reentrant variant drops them when no positional input requires grad)
    return checkpoint(original, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)


def checkpoint_modules(blocks: list[nn.Module]) -> int:
    """Wrap each module's ``forward`` in non-reentrant :func:`torch.utils.checkpoint.checkpoint` (in place, names
    and state dict unchanged). Already wrapped modules are skipped.

    Returns:
        The number of modules newly wrapped.
    """
    count = 0
    for block in blocks:
        if getattr(block, "_reprogram_checkpointed", False):
            continue
        if "forward" in block.__dict__:
            # a method already wrapped this block's forward (prompt tuning carries prompt states from layer to
            # layer in its wrapper; recomputing that wrapper in the backward pass would read the wrong state)
            raise ValueError(
                f"{type(block).__name__}.forward is already wrapped by a method; enable checkpointing on the bare "
                "backbone first (enable_checkpointing(backbone) before attaching prompt tuning), then attach"
            )
        block.forward = functools.partial(_checkpointed_forward, block.forward)
        block._reprogram_checkpointed = True
        count += 1
    return count


def _outermost(modules: list[nn.Module], root: nn.Module) -> list[nn.Module]:
    """Drop modules that sit inside another listed module (nested checkpoints would recompute twice)."""
    chosen = {id(m) for m in modules}
    inner: set[int] = set()
    for m in modules:
        inner.update(id(c) for c in m.modules() if c is not m and id(c) in chosen)
    return [m for m in root.modules() if id(m) in chosen and id(m) not in inner]


def enable_checkpointing(backbone: Backbone) -> str:
    """Activation checkpointing of the frozen backbone through the most specific switch available.

    1. ``backbone.checkpoint_blocks()`` (families that name their blocks: EfficientNet-Lite, torchvision video):
       each block's forward is wrapped in :func:`torch.utils.checkpoint.checkpoint` (non-reentrant).
    2. transformers models: the layers transformers itself marks as checkpointable (``GradientCheckpointingLayer``:
       encoder layers, wav2vec 2.0 conv layers). They are wrapped the same way rather than switched on with
       ``gradient_checkpointing_enable``, because transformers checkpoints only when ``layer.training`` is
       True and a frozen backbone stays in eval mode (so its dropout never fires).
    3. timm and open_clip models: their own ``set_grad_checkpointing(True)``, which checkpoints in eval mode too
       (timm defaults to non-reentrant; open_clip passes ``use_reentrant=False``).

    Returns:
        A one-line description of what was switched on (for logs and result provenance).

    Raises:
        ValueError: the backbone offers no blocks to checkpoint (the message names the fix).
    """
    own = getattr(backbone, "checkpoint_blocks", None)
    if callable(own):
        n = checkpoint_modules(list(own()))
        return f"torch.utils.checkpoint on {n} blocks named by {type(backbone).__name__}.checkpoint_blocks()"
    try:
        from transformers.modeling_layers import GradientCheckpointingLayer
    except ImportError:  # pragma: no cover - transformers is a dependency
        GradientCheckpointingLayer = ()  # noqa: N806
    marked = [m for m in backbone.modules() if GradientCheckpointingLayer and isinstance(m, GradientCheckpointingLayer)]
    if marked:
        n = checkpoint_modules(_outermost(marked, backbone))
        return f"torch.utils.checkpoint on {n} transformers GradientCheckpointingLayer blocks"
    model = getattr(backbone, "model", None)
    switch = getattr(model, "set_grad_checkpointing", None)
    if callable(switch):
        switch(True)
        return f"{type(model).__module__.split('.')[0]} set_grad_checkpointing(True)"
    raise ValueError(
        f"backbone {getattr(backbone, 'name', type(backbone).__name__)!r} has no blocks to checkpoint; set "
        "accel.checkpointing=false, or give its class a checkpoint_blocks() method listing its blocks"
    )


def apply_accel(model: nn.Module, config: AccelConfig, device: str | torch.device) -> nn.Module:
    """Apply ``config`` to ``model`` (already on ``device``) in place and return it.

    Order: channels-last, then checkpointing, then compile (so the compiled graph sees both). Compile and
    checkpointing act on the frozen backbone found inside ``model`` (the whole model when it holds none);
    channels-last on convnet backbones only.

    Args:
        model: a :class:`~reprogram.methods.program.ReprogrammedModel`, a PEFT classifier, or a bare backbone.
        config: the options.
        device: where the model runs.

    Returns:
        ``model`` (the same object: parameter names and state dict are unchanged).
    """
    check_device(config, device)
    backbone = find_backbone(model)
    if config.channels_last and backbone is not None:
        done = enable_channels_last(backbone)
        log.info("channels_last: %s", "applied" if done else "skipped (not a 2-D/3-D convnet)")
    if config.checkpointing:
        if backbone is None:
            raise ValueError(f"{type(model).__name__} holds no Backbone to checkpoint; set accel.checkpointing=false")
        log.info("checkpointing: %s", enable_checkpointing(backbone))
    if config.compile != "off":
        target = backbone if backbone is not None else model
        target.compile(mode=None if config.compile == "default" else config.compile)
        log.info("compile: %s (mode %s)", type(target).__name__, config.compile)
    return model


def frozen_grad_problems(model: nn.Module) -> list[str]:
    """Names of frozen parameters that hold or would receive a gradient (empty list: all is well).

    Frozen = ``requires_grad`` is False anywhere, and every backbone parameter outside the modules a method
    tagged trainable (unless the backbone was unfrozen for full fine-tuning).
    """
    problems = [f"{n} (frozen, holds .grad)" for n, p in model.named_parameters() if not p.requires_grad and
                p.grad is not None]
    prefix = {id(m): n for n, m in model.named_modules()}
    for module in model.modules():
        if not isinstance(module, Backbone) or getattr(module, "_unfrozen", False):
            continue
        base = prefix[id(module)]

        def visit(m: nn.Module, path: str, tagged: bool) -> None:
            tagged = tagged or bool(getattr(m, TRAINABLE_TAG, False))
            if not tagged:
                for n, p in m.named_parameters(recurse=False):
                    if p.requires_grad:
                        problems.append(f"{path}.{n} (frozen backbone weight requires grad)".lstrip("."))
            for n, c in m.named_children():
                visit(c, f"{path}.{n}" if path else n, tagged)

        visit(module, base, False)
    return problems


def assert_no_frozen_grads(model: nn.Module) -> None:
    """Internal invariant of every training step: no frozen parameter requires or holds a gradient.

    Raises:
        AssertionError: naming the offending parameters.
    """
    problems = frozen_grad_problems(model)
    assert not problems, f"frozen parameters got gradients: {problems[:10]}" + (
        f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
    )
