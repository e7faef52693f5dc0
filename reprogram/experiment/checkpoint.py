"""What training changes and how it is kept: the trainable state of a model (parameters that require grad plus
buffers that changed), per-epoch checkpoints (weights, optimizer/scheduler/scaler state, history) written
atomically, resumed from ``latest.json``, and loading a saved trainable state into a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from reprogram.experiment.results import atomic_write_text

#: the file naming the newest complete checkpoint of a run
LATEST = "latest.json"


def trainable_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Named parameters that require grad."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


class TrainableState:
    """The part of a model that training changes: parameters that require grad, plus buffers that change
    during training (fitted label mappings, batch-norm statistics under full fine-tuning).

    Args:
        model: the model, at its initialisation.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.initial_buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def state(self) -> dict[str, torch.Tensor]:
        """Name -> CPU tensor copy of every trainable parameter and changed buffer."""
        out = {n: p.detach().cpu().clone().contiguous() for n, p in trainable_parameters(self.model)}
        for n, b in self.model.named_buffers():
            init = self.initial_buffers.get(n)
            if init is None or init.shape != b.shape or not torch.equal(init, b):
                out[n] = b.detach().cpu().clone().contiguous()
        return out

    def load(self, state: dict[str, torch.Tensor]) -> None:
        """Copy ``state`` into the model in place (every name must exist in the model)."""
        tensors = dict(self.model.named_parameters()) | dict(self.model.named_buffers())
        unknown = sorted(set(state) - set(tensors))
        if unknown:
            raise KeyError(
                f"checkpoint holds tensors the model does not have: {unknown[:5]}; was it made by "
                "another method or config?"
            )
        with torch.no_grad():
            for n, t in state.items():
                tensors[n].copy_(t.to(tensors[n].device))


def save_checkpoint(
    ckpt: Path, epoch: int, state: TrainableState | dict, optim: tuple, history: list, best: tuple, stale: int
) -> None:
    """Write this epoch's files, then point ``latest.json`` at them (atomic), then drop older files.

    Args:
        state: the model's :class:`TrainableState`, or its ``state()`` already taken this epoch (not copied again).
        optim: ``(optimizer, scheduler, grad scaler)``.
        best: ``(best epoch, its validation metrics, its trainable state)``.
    """
    optimizer, scheduler, scaler = optim
    best_epoch, best_val, best_state = best
    ckpt.mkdir(parents=True, exist_ok=True)
    weights, extra = f"epoch-{epoch:04d}.safetensors", f"epoch-{epoch:04d}.state.pt"
    best_file = f"best-{best_epoch:04d}.safetensors"
    current = state.state() if isinstance(state, TrainableState) else state
    save_file(current, str(ckpt / weights), metadata={"epoch": str(epoch)})
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()},
        ckpt / extra,
    )
    if not (ckpt / best_file).exists():
        save_file(best_state, str(ckpt / best_file), metadata={"epoch": str(best_epoch)})
    latest = {
        "epoch": epoch,
        "weights": weights,
        "state": extra,
        "best": best_file,
        "best_epoch": best_epoch,
        "best_val": best_val,
        "history": history,
        "stale": stale,
    }
    atomic_write_text(ckpt / LATEST, json.dumps(latest))
    for f in ckpt.iterdir():
        if f.name not in (weights, extra, best_file, LATEST):
            f.unlink(missing_ok=True)


def load_checkpoint(ckpt: Path, state: TrainableState, optim: tuple) -> dict:
    """Load the trainable state and ``(optimizer, scheduler, scaler)`` states named by ``latest.json``."""
    optimizer, scheduler, scaler = optim
    try:
        saved = json.loads((ckpt / LATEST).read_text())
        state.load(load_file(str(ckpt / saved["weights"])))
        extra = torch.load(ckpt / saved["state"], weights_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise RuntimeError(
            f"checkpoint in {ckpt} cannot be resumed ({type(e).__name__}: {e}); delete the folder "
            "to restart this run from scratch"
        ) from None
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    if extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    return saved


def load_trainable(model: nn.Module, path: str | Path) -> None:
    """Load a trainable-state safetensors file (``trainable.safetensors`` or a checkpoint) into ``model``."""
    TrainableState(model).load(load_file(str(path)))
