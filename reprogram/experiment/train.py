"""The one training loop of every trainable method (programs, mappers, LoRA, prompts, probes, fine-tuning).

Contract: the model is any ``nn.Module`` whose ``forward(wave)`` maps a ``(B, N)`` waveform batch to
``(B, K)`` target logits and whose trainable parameters are exactly those with ``requires_grad``.
Models with a data-fitted part (frequency / iterative label mapping) expose
``start_epoch(loader, epoch: int)`` (as :class:`~reprogram.methods.program.ReprogrammedModel` does), which the loop
calls at the start of every epoch; datasets with ``set_epoch(epoch)`` (seeded random crops) get it too.

The loop: AdamW (weight decay on matrices only), linear warm-up then cosine decay per step, gradient
clipping, the model-path options of :mod:`reprogram.runtime.accel` (channels-last, compile, autocast, activation
checkpointing), the seeded worker-independent loader of :mod:`reprogram.runtime.threads`, early stopping and
model selection on the VALIDATION split only (the loop never sees a test set), a checkpoint of the
trainable state (safetensors) plus optimizer / scheduler / epoch state after every epoch, and exact
resumption: every epoch reseeds torch / numpy / random and draws its order and crops from ``(seed, epoch)``,
so an interrupted run resumed from its last checkpoint ends with the same weights as an uninterrupted one.

Under ``torchrun`` the loop trains data-parallel (:mod:`reprogram.runtime.distributed`): ``batch_size`` stays the global
batch, each process takes its shard of it, gradients are averaged by DDP, validation logits are gathered, and
only rank 0 writes checkpoints; the result equals the one-process run within float tolerance.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from reprogram.experiment import checkpoint
from reprogram.experiment.config import TrainingConfig
from reprogram.experiment.metrics import classification_metrics, cross_entropy
from reprogram.runtime.accel import AccelConfig, apply_accel, autocast_context, cuda_defaults, grad_scaler
from reprogram.runtime.distributed import (
    DistEnv,
    all_sum,
    gather_predictions,
    global_mean_loss,
    rank_seed,
    session,
    wrap_model,
)
from reprogram.runtime.sharding import make_shard_loader
from reprogram.runtime.threads import configure_threads, make_loader


@dataclass
class TrainResult:
    """What training returns; the model holds the selected (best validation) weights afterwards.

    Attributes:
        best_epoch: epoch (0-based) whose weights were selected on the validation split.
        best_val: validation metrics of that epoch.
        history: one dict per epoch (train loss, validation loss and metric, learning rate, seconds).
        epochs_run: number of epochs completed.
        stopped_early: whether patience ran out before ``epochs``.
        resumed_from: epoch of the checkpoint training resumed from (``None``: started fresh).
        state: the selected trainable state (name -> CPU tensor), as saved in the checkpoints.
        timing: wall seconds of this call's epochs by phase (not part of any result file): ``steps`` (training
            steps run), ``train_s`` (the step loop, data wait included, up to the epoch's one host sync),
            ``eval_s`` (validation) and ``checkpoint_s`` (selection copy and checkpoint files).
    """

    best_epoch: int
    best_val: dict
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    stopped_early: bool = False
    resumed_from: int | None = None
    state: dict = field(default_factory=dict, repr=False)
    timing: dict = field(default_factory=dict)


def _to_device(model: nn.Module, device: str) -> None:
    """Move ``model`` to ``device`` unless every tensor is already there (then ``.to`` is skipped entirely)."""
    target = torch.device(device)
    tensors = list(model.parameters()) + list(model.buffers())
    if any(
        t.device.type != target.type or (target.index is not None and t.device.index != target.index) for t in tensors
    ):
        model.to(target)


def _loss_sum(device: str, distributed: bool) -> torch.Tensor | float:
    """The epoch's running ``sum(loss * items)``: a float64 scalar on the device (no sync per step), or a
    Python float where the device has no float64 (MPS) or under torchrun (whose loss parts are floats)."""
    if distributed or torch.device(device).type == "mps":
        return 0.0
    return torch.zeros((), dtype=torch.float64, device=device)


def _check_finite(losses: list[torch.Tensor], epoch: int) -> None:
    """Raise ``FloatingPointError`` naming the first step of the epoch whose loss was not finite (one sync)."""
    if not losses:
        return
    stacked = torch.stack(losses).float()
    bad = ~torch.isfinite(stacked)
    if bool(bad.any()):
        step = int(bad.nonzero()[0, 0])
        raise FloatingPointError(
            f"training loss became {float(stacked[step])} at epoch {epoch}, step {step}; lower training.lr or "
            "set training.grad_clip"
        )


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch, a function of the run's seed and the epoch only (so resuming is exact)."""
    return (seed * 1_000_003 + epoch * 7919 + 17) % 2**31


def unpack(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(wave (B, N), target (B,))`` from a batch that is a tuple ``(wave, target, ...)`` or a dict."""
    if isinstance(batch, dict):
        wave = next((batch[k] for k in ("wave", "waveform", "audio", "x") if k in batch), None)
        target = next((batch[k] for k in ("target", "label", "y") if k in batch), None)
        assert wave is not None and target is not None, f"batch dict lacks wave/target keys: {list(batch)}"
        return wave, target
    return batch[0], batch[1]


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` scalar counts measured from the module (shared tensors counted once)."""
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def warmup_cosine(total_steps: int, warmup_fraction: float, min_lr_ratio: float) -> Callable[[int], float]:
    """Learning-rate multiplier of step ``s``: linear warm-up, then cosine decay to ``min_lr_ratio``."""
    warmup = int(round(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on tensors of 2+ dimensions only."""
    params = checkpoint.trainable_parameters(model)
    if not params:
        raise ValueError(
            f"{type(model).__name__} has no trainable parameters; this method is not trained by the "
            "training loop (use a method with a program, adapter, prompt or head)"
        )
    decay = [p for _, p in params if p.ndim >= 2]
    no_decay = [p for _, p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``(targets (M,), logits (M, K))`` of the model in eval mode over ``loader``."""
    was_training = model.training
    model.eval()
    targets, scores = [], []
    for batch in loader:
        wave, target = unpack(batch)
        scores.append(model(wave.to(device, non_blocking=True)).float())  # stays on the device: no sync per batch
        targets.append(target.cpu())
    model.train(was_training)
    return torch.cat(targets).numpy(), torch.cat(scores).cpu().numpy()


def evaluate(
    model: nn.Module, loader: DataLoader, classes: list[str], device: str = "cpu", positive: int | None = None
) -> dict:
    """Metrics of ``model`` on ``loader`` (see :func:`reprogram.experiment.metrics.classification_metrics`) plus
    ``loss``."""
    return _metrics(*predict(model, loader, device), classes, positive)


def _metrics(y: np.ndarray, scores: np.ndarray, classes: list[str], positive: int | None) -> dict:
    return {**classification_metrics(y, scores, classes, positive), "loss": cross_entropy(y, scores)}


def _selection_key(metrics: dict, name: str) -> tuple[float, float]:
    """Higher is better: the selection metric first, then the negative validation loss as tie-break."""
    value = -metrics["loss"] if name == "neg_loss" else metrics.get(name)
    value = -math.inf if value is None else value
    return (value, -metrics["loss"])


def _class_weights(dataset: Dataset, num_classes: int) -> torch.Tensor:
    known = getattr(dataset, "targets", None)  # the datasets' own labels: no clip is read (or cropped) for them
    if known is not None and len(known) == len(dataset):
        targets = torch.as_tensor([int(t) for t in known])
    else:
        targets = torch.as_tensor([int(unpack(dataset[i])[1]) for i in range(len(dataset))])
    counts = torch.bincount(targets, minlength=num_classes).float()
    return torch.where(counts > 0, counts.sum() / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))


def train(
    model: nn.Module,
    train_data: Dataset,
    val_data: Dataset,
    classes: list[str],
    config: TrainingConfig,
    *,
    seed: int,
    checkpoint_dir: str | Path | None = None,
    positive: int | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``model`` in place and leave it holding the weights selected on ``val_data``.

    Args:
        model: ``forward(wave (B, N)) -> logits (B, K)``; trains the parameters that require grad.
        train_data: dataset of ``(wave (N,), target)`` items (random crops are drawn from the global
            generators, which the loop reseeds every epoch).
        val_data: the validation split, used for early stopping and model selection; never the test split.
        classes: the K class names in target order.
        config: the ``training`` section of the experiment config.
        seed: the run's seed.
        checkpoint_dir: folder for per-epoch checkpoints; when it holds one, training resumes from it.
        positive: target index of the positive class for detection tasks (enables ROC-AUC / AP selection).
        progress: show tqdm bars; ``None`` shows them only when stderr is a terminal (rank 0 only).
    """
    with session(config.device) as env:  # a no-op outside torchrun
        return _train(model, train_data, val_data, classes, config, seed, checkpoint_dir, positive, progress, env)


def _train(model, train_data, val_data, classes, config, seed, checkpoint_dir, positive, progress, env: DistEnv):
    """:func:`train` inside the (possibly one-process) data-parallel job ``env``."""
    device = env.device(config.device)
    cuda_defaults(device)
    _to_device(model, device)
    state = checkpoint.TrainableState(model)
    accel = AccelConfig.from_training(config)
    apply_accel(model, accel, device)
    scaler = grad_scaler(accel, device)
    seed_everything(epoch_seed(seed, -1))
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(train_data) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.epochs * steps_per_epoch, config.warmup_fraction, config.min_lr_ratio)
    )
    weight = _class_weights(train_data, len(classes)).to(device) if config.balanced_loss else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    # the order and random crops of epoch e are a function of (seed, e) only, whatever the number of workers
    fit_loader = make_loader(train_data, config.batch_size, True, seed, config.num_workers, device)
    if env.enabled:  # this rank's shards of the same global batches; data-fitted mappers still see all of it
        loader = make_shard_loader(train_data, config.batch_size, True, seed, env, config.num_workers, device)
        eval_loader = make_shard_loader(val_data, config.batch_size, False, seed, env, config.num_workers, device)
    else:
        loader = fit_loader
        eval_loader = make_loader(val_data, config.batch_size, False, seed, config.num_workers, device)
    configure_threads(loader.num_workers, env.cores())
    show = (sys.stderr.isatty() if progress is None else progress) and env.is_main
    trainable = [p for _, p in checkpoint.trainable_parameters(model)]  # the optimizer's, listed once
    timing = {"steps": 0, "train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}
    net = model  # the DDP wrapper under torchrun, made at the first step (after any data-fitted mapper)

    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history: list[dict] = []
    start_epoch, best_key, best_epoch, best_val, best_state, stale = 0, None, -1, {}, None, 0
    resumed_from = None
    if ckpt is not None and (ckpt / checkpoint.LATEST).is_file():
        saved = checkpoint.load_checkpoint(ckpt, state, (optimizer, scheduler, scaler))
        start_epoch, history, best_epoch, best_val, stale = (
            saved["epoch"] + 1,
            saved["history"],
            saved["best_epoch"],
            saved["best_val"],
            saved["stale"],
        )
        best_state = load_file(str(ckpt / saved["best"]))
        best_key = _selection_key(best_val, config.select_metric)
        resumed_from = saved["epoch"]

    stopped_early = bool(history) and config.patience is not None and stale >= config.patience
    for epoch in range(start_epoch, config.epochs):
        if stopped_early:
            break
        t0 = time.perf_counter()
        seed_everything(rank_seed(epoch_seed(seed, epoch), env.rank))  # dropout and other global-generator draws
        loader.set_epoch(epoch)
        fit_loader.set_epoch(epoch)
        if hasattr(model, "start_epoch"):
            model.start_epoch(fit_loader, epoch)
        model.train()
        total, count, losses = _loss_sum(device, env.enabled), 0, []
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show, leave=False)
        for step, batch in enumerate(bar):
            wave, target = unpack(batch)
            wave, target = wave.to(device, non_blocking=True), target.to(device, non_blocking=True)
            if env.enabled and net is model:
                net = wrap_model(model, env, device, wave)
            with autocast_context(accel, device):
                logits = net(wave)  # (B, K); under torchrun (B / world size, K)
                if env.enabled:  # this rank's share of the global batch mean, scaled for DDP's averaging
                    loss, part, n = global_mean_loss(
                        logits.float(), target, loader.real_count(step), loss_fn, env.world_size
                    )
                else:
                    loss = loss_fn(logits.float(), target)
            losses.append(loss.detach())  # checked once per epoch below: no host sync per step
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            if env.enabled:
                total, count = total + part * n, count + n
            else:  # float64 on the device: the same sums as Python floats, without a sync
                total += loss.detach().to(total.dtype) * len(target)
                count += len(target)
        _check_finite(losses, epoch)
        total = float(total)  # the epoch's one sync
        t1 = time.perf_counter()
        timing["steps"] += len(losses)
        timing["train_s"] += t1 - t0
        if env.enabled:
            total = all_sum(total, device)
            val = _metrics(*gather_predictions(model, eval_loader, device, unpack), classes, positive)
        else:
            val = evaluate(model, eval_loader, classes, device, positive)
        t2 = time.perf_counter()
        timing["eval_s"] += t2 - t1
        key = _selection_key(val, config.select_metric)
        current = state.state()  # one copy per epoch, kept as best and/or written to the checkpoint
        if best_key is None or key > best_key:
            best_key, best_epoch, best_val, best_state, stale = key, epoch, val, current, 0
        else:
            stale += 1
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / max(count, 1),
                "val_loss": val["loss"],
                f"val_{config.select_metric}": key[0],
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - t0,
            }
        )
        stopped_early = config.patience is not None and stale >= config.patience and epoch + 1 < config.epochs
        if ckpt is not None and env.is_main:
            checkpoint.save_checkpoint(
                ckpt, epoch, current, (optimizer, scheduler, scaler), history, (best_epoch, best_val, best_state), stale
            )
        timing["checkpoint_s"] += time.perf_counter() - t2
    assert best_state is not None, "training ran no epoch"
    state.load(best_state)
    return TrainResult(best_epoch, best_val, history, len(history), stopped_early, resumed_from, best_state, timing)
