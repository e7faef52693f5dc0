"""Save and load what a PEFT method trained: a safetensors file plus a JSON config.

``save(backbone, folder)`` writes ``adapter.safetensors`` (every parameter of the backbone that requires
grad, by its qualified name: LoRA matrices, prompts, gates; for full fine-tuning, the whole trained encoder)
and ``adapter_config.json`` (the backbone name and each attached method's config). ``load(backbone, folder)``
attaches the same methods to a freshly built backbone and copies the tensors in; the outputs are identical
to the saved model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from backbones.base import Backbone
from reprogram.peft.base import PeftMethod

WEIGHTS = "adapter.safetensors"
CONFIG = "adapter_config.json"
FORMAT_VERSION = 1


def attached_methods(backbone: Backbone) -> list[PeftMethod]:
    """The PEFT methods attached to ``backbone``, in attachment order."""
    return [m for name, m in backbone.named_children() if name.startswith("peft_") and isinstance(m, PeftMethod)]


def trainable_state(backbone: Backbone) -> dict[str, torch.Tensor]:
    """Every parameter that requires grad, by qualified name (detached, contiguous)."""
    return {n: p.detach().contiguous() for n, p in backbone.named_parameters() if p.requires_grad}


def save(backbone: Backbone, folder: str | Path) -> Path:
    """Write the attached methods' trained tensors and configs to ``folder`` (created if needed).

    Args:
        backbone: a backbone with at least one attached method (not merged).
        folder: output folder.

    Returns:
        The folder.
    """
    methods = attached_methods(backbone)
    if not methods:
        raise ValueError("nothing to save: no PEFT method is attached to this backbone (use reprogram.peft.apply)")
    if any(getattr(m, "merged", False) for m in methods):
        raise ValueError("the adapters are merged into the base weights; call .unmerge() before saving them")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = trainable_state(backbone)
    save_file(state, str(folder / WEIGHTS), metadata={"format": "reprogram-peft", "version": str(FORMAT_VERSION)})
    meta = {
        "format_version": FORMAT_VERSION,
        "backbone": getattr(backbone, "name", None),
        "methods": [m.config.to_dict() for m in methods],
        "num_tensors": len(state),
        "num_parameters": sum(t.numel() for t in state.values()),
    }
    (folder / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def read_config(folder: str | Path) -> dict:
    """The JSON config saved in ``folder``."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass the folder written by reprogram.peft.io.save")
    return json.loads(path.read_text())


def load(backbone: Backbone, folder: str | Path) -> list[PeftMethod]:
    """Attach the saved methods to ``backbone`` (a fresh one, built like the saved one) and load their tensors.

    Args:
        backbone: a freshly built backbone with no method attached.
        folder: a folder written by :func:`save`.

    Returns:
        The attached methods.
    """
    from reprogram.peft import apply  # the registry imports this module's siblings

    meta = read_config(folder)
    name = getattr(backbone, "name", None)
    if meta.get("backbone") not in (None, name):
        raise ValueError(f"{Path(folder) / CONFIG} was saved from backbone {meta['backbone']!r} but is being "
                         f"loaded into {name!r}; build the backbone {meta['backbone']!r} first")
    if attached_methods(backbone):
        raise ValueError("load() needs a fresh backbone, but methods are already attached to this one")
    methods = [apply(backbone, cfg["method"], **{k: v for k, v in cfg.items() if k != "method"})
               for cfg in meta["methods"]]
    state = load_file(str(Path(folder) / WEIGHTS))
    params = {n: p for n, p in backbone.named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise KeyError(f"{Path(folder) / WEIGHTS} does not match the attached methods: missing {missing[:5]}, "
                       f"unexpected {unexpected[:5]}; was it saved from a differently configured backbone?")
    with torch.no_grad():
        for n, p in params.items():
            if state[n].shape != p.shape:
                raise ValueError(f"{WEIGHTS}: tensor {n} has shape {tuple(state[n].shape)}, expected {tuple(p.shape)}")
            p.copy_(state[n])
    return methods
