"""What every PEFT method shares: a config dataclass, an attach/detach life cycle, and backbone introspection.

A method is attached to a frozen speech :class:`~backbones.base.Backbone` *in place*: it inserts its modules
into the wrapped Hugging Face network (``backbone.model``) and registers itself as the child ``peft_<method>``
of the backbone, so that ``backbone.parameters()`` lists its trainable tensors, ``backbone.num_parameters(True)``
counts them, and ``backbone.train()`` switches them (they carry :data:`~backbones.base.TRAINABLE_TAG`).

The backbone describes itself; nothing here branches on model names:

* ``backbone.attention_projections()`` names the q/k/v/o projection modules (suffixes such as ``"q_proj"``);
* the encoder layers are the ``nn.ModuleList`` whose every entry holds a query projection;
* the attention module of a layer is the parent of its query projection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from backbones.base import TRAINABLE_TAG, Backbone

ROLES = ("q", "k", "v", "o")


@dataclass
class PeftConfig:
    """Base of every method's config; subclasses add fields and validate them in ``__post_init__``."""

    method: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields plus the method name (``{"method": "lora", "r": 8, ...}``)."""
        d = dataclasses.asdict(self)
        return {"method": self.method, **{k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PeftConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``KeyError`` naming the valid ones."""
        d = {k: v for k, v in d.items() if k != "method"}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise KeyError(f"{cls.__name__} has no option(s) {unknown}; valid options: {sorted(names)}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) and "tuple" in str(types[k]) else v for k, v in d.items()})


class PeftMethod(nn.Module):
    """A method attached to one backbone. Subclasses implement :meth:`_attach` and :meth:`_detach`.

    Args:
        backbone: a frozen speech backbone (has ``.model`` and ``.attention_projections()``).
        config: the method's config.
    """

    config_class: ClassVar[type[PeftConfig]] = PeftConfig

    def __init__(self, backbone: Backbone, config: PeftConfig) -> None:
        super().__init__()
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(config).__name__}")
        if not hasattr(backbone, "model"):
            raise ValueError(
                f"{type(self).__name__} needs a speech backbone wrapping a transformers model as `.model` "
                f"(tiny:hubert, hf:..., offline:whisper_tiny_en); got {type(backbone).__name__}"
            )
        slot = f"peft_{config.method}"
        if slot in dict(backbone.named_children()):
            raise ValueError(f"{config.method} is already attached to {getattr(backbone, 'name', backbone)!r}; "
                             "build a fresh backbone to attach it again")
        self.config = config
        setattr(self, TRAINABLE_TAG, True)
        self._attach(backbone)
        backbone.add_module(slot, self)
        backbone.train(backbone.training)  # newly tagged modules take the current mode

    def _attach(self, backbone: Backbone) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, *args, **kwargs):  # the method acts through hooks inside the backbone
        raise TypeError(f"{type(self).__name__} is not called directly; call the backbone it is attached to")


def projection_names(backbone: Backbone) -> dict[str, str]:
    """The backbone's q/k/v/o projection suffixes as ``{"q": "q_proj", "k": ..., "v": ..., "o": ...}``."""
    if not hasattr(backbone, "attention_projections"):
        raise ValueError(f"backbone {getattr(backbone, 'name', type(backbone).__name__)!r} does not name its "
                         "attention projections (attention_projections()); PEFT methods need a speech backbone")
    names = backbone.attention_projections()
    if isinstance(names, Mapping):
        out = {role: names[role] for role in ROLES if role in names}
    elif isinstance(names, Sequence) and not isinstance(names, str) and len(names) == 4:
        out = dict(zip(ROLES, names, strict=True))
    else:
        raise ValueError(f"attention_projections() must give q/k/v/o names as a mapping or 4 names, got {names!r}")
    missing = [r for r in ROLES if r not in out]
    if missing:
        raise ValueError(f"attention_projections() lacks the role(s) {missing}; got {out}")
    return out


def _suffix_match(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def encoder_layers(backbone: Backbone) -> nn.ModuleList:
    """The transformer layers of the backbone: the ModuleList whose every entry holds a query projection."""
    q = projection_names(backbone)["q"]
    best: nn.ModuleList | None = None
    for module in backbone.model.modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if all(any(_suffix_match(n, q) for n, _ in layer.named_modules()) for layer in module):
                if best is None or len(module) > len(best):
                    best = module
    if best is None:
        raise ValueError(f"found no list of layers holding {q!r} modules in {type(backbone.model).__name__}")
    return best


def layer_attention(layer: nn.Module, backbone: Backbone) -> nn.Module:
    """The attention module of one layer: the parent of its query projection."""
    q = projection_names(backbone)["q"]
    for name, module in layer.named_modules():
        if any(_suffix_match(f"{name}.{child}" if name else child, q) for child, _ in module.named_children()):
            return module
    raise ValueError(f"layer {type(layer).__name__} has no {q!r} module")


def num_heads(attention: nn.Module, backbone: Backbone) -> int:
    """Number of attention heads of an attention module (its own attribute, else the model config)."""
    for attr in ("num_heads", "num_attention_heads", "n_heads"):
        value = getattr(attention, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    config = backbone.model.config
    for attr in ("num_attention_heads", "encoder_attention_heads"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell the head count of {type(attention).__name__}")


def hidden_size(backbone: Backbone) -> int:
    """Width D of the transformer (``backbone.hidden_size`` or the query projection's input width)."""
    value = getattr(backbone, "hidden_size", None)
    if isinstance(value, int):
        return value
    layer = encoder_layers(backbone)[0]
    q = projection_names(backbone)["q"]
    return getattr(layer_attention(layer, backbone), q).in_features


def extend_mask(mask: torch.Tensor | None, num_prompts: int) -> torch.Tensor | None:
    """Extend an attention mask so that ``num_prompts`` prompt positions prepended to the sequence are visible.

    Handles the forms transformers passes to layers: ``None``; 2-d ``(B, T)`` keep-masks (1/True = keep);
    4-d ``(B, 1, Q, T)`` masks, boolean (True = attend) or additive float (0 = attend).
    Prompt columns are always attended; prompt rows (queries) copy the first frame's row.
    """
    if mask is None or num_prompts == 0:
        return mask
    keep = torch.ones((), dtype=mask.dtype, device=mask.device) if mask.dtype == torch.bool or mask.ndim == 2 \
        else torch.zeros((), dtype=mask.dtype, device=mask.device)
    cols = keep.expand(*mask.shape[:-1], num_prompts)
    out = torch.cat([cols, mask], dim=-1)  # (..., Q, P + T)
    if mask.ndim == 4 and mask.shape[-2] > 1:
        out = torch.cat([out[..., :1, :].expand(-1, -1, num_prompts, -1), out], dim=-2)  # (B, 1, P + Q, P + T)
    elif mask.ndim not in (2, 4):
        raise AssertionError(f"unexpected attention mask shape {tuple(mask.shape)}")
    return out


def tag_trainable(module: nn.Module) -> None:
    """Mark ``module`` so that the frozen backbone's ``.train()`` lets it (and its children) follow train mode."""
    setattr(module, TRAINABLE_TAG, True)
