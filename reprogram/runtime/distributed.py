"""Data-parallel training across processes with ``torchrun`` and ``DistributedDataParallel`` (DDP).

Launch any entry point that trains through :func:`reprogram.experiment.train.train` with ``torchrun``::

    torchrun --standalone --nproc_per_node 4 -m reprogram.cli run CONFIG --out DIR

Each process reads its place from the variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` / ``MASTER_PORT``): :class:`DistEnv`. Without them (a plain ``python``
run) everything here is a no-op and training is the one-process loop, unchanged.

What makes N processes compute what one process computes for the same global batch and seed:

- ``training.batch_size`` is the GLOBAL batch. :class:`ShardBatchSampler` cuts each global batch of the
  one-process loader's order (the same ``(seed, epoch)`` permutation) into ``world_size`` contiguous
  shards of ``batch_size / world_size`` items; rank r takes shard r. The last, incomplete global batch is
  split as evenly as possible; a rank left with nothing re-reads one item and gives it zero weight, so every
  rank joins every gradient all-reduce.
- DDP averages gradients over ranks, so each rank's loss is ``world_size * (its summed loss) / (global
  denominator)`` (:func:`global_mean_loss`): after averaging, the gradient of the global batch mean,
  also for class-weighted cross-entropy (whose mean divides by the summed weights of the targets) and for
  unequal last shards, where averaging per-rank means would not be the global mean.
- Validation is sharded the same way and the logits are gathered back into data order
  (:func:`gather_predictions`), so every rank computes the same metrics and takes the same early-stopping
  and model-selection decisions.
- Random crops of :class:`~reprogram.data.dataset.WaveformDataset` are drawn from ``(seed, epoch, index)``,
  so they do not depend on which rank reads an item. Dropout masks do (each rank seeds its global generator
  with :func:`rank_seed`): with dropout, N processes match one in distribution, not bit for bit.
- Data-fitted label mappings (FLM, ILM) are fitted on the FULL training loader by every rank (same data,
  same order, same result), never on a shard.

Only rank 0 writes checkpoints (and, by the caller, result files); every rank can read them to resume.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from reprogram.runtime.threads import available_cores

if TYPE_CHECKING:  # pragma: no cover
    from reprogram.runtime.sharding import ShardLoader

LAUNCH_FIX = "launch with `torchrun --standalone --nproc_per_node N ...`, which sets them all"


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a data-parallel job (defaults: a single process).

    Attributes:
        rank: global rank (0 .. world_size - 1).
        world_size: number of processes.
        local_rank: rank on this node (picks the GPU).
        local_world_size: processes on this node (share its CPU cores).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> DistEnv:
        """Read ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE`` (torchrun's variables)."""
        env = os.environ if environ is None else environ
        if "WORLD_SIZE" not in env:
            return cls()
        values = {}
        for key, default in (("RANK", None), ("WORLD_SIZE", None), ("LOCAL_RANK", "0"), ("LOCAL_WORLD_SIZE", None)):
            raw = env.get(key, default if key != "LOCAL_WORLD_SIZE" else env["WORLD_SIZE"])
            if raw is None:
                raise KeyError(f"WORLD_SIZE is set but {key} is not; {LAUNCH_FIX}")
            try:
                values[key] = int(raw)
            except ValueError:
                raise ValueError(f"environment variable {key}={raw!r} is not an integer; {LAUNCH_FIX}") from None
        out = cls(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], values["LOCAL_WORLD_SIZE"])
        if not (0 <= out.rank < out.world_size and 0 <= out.local_rank < out.local_world_size <= out.world_size):
            raise ValueError(f"inconsistent torchrun variables {out}; {LAUNCH_FIX}")
        return out

    @property
    def enabled(self) -> bool:
        """More than one process: gradients are all-reduced."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0, the one process that writes files."""
        return self.rank == 0

    def device(self, requested: str) -> str:
        """The device of this rank: ``cuda`` becomes ``cuda:<LOCAL_RANK>``; CPU stays CPU."""
        if not self.enabled or not requested.startswith("cuda"):
            return requested
        if ":" in requested:
            raise ValueError(
                f"training.device={requested} names one GPU, but each of the {self.local_world_size} processes "
                "on this node takes the GPU of its LOCAL_RANK; set training.device=cuda"
            )
        return f"cuda:{self.local_rank}"

    def cores(self) -> int:
        """CPU cores of this process: the node's usable cores shared among its processes."""
        return max(1, available_cores() // self.local_world_size)

    def shard_size(self, global_batch: int) -> int:
        """Items per rank of a full global batch; raises when ``global_batch`` does not split evenly."""
        if global_batch % self.world_size:
            down = global_batch - global_batch % self.world_size
            options = " or ".join(f"training.batch_size={b}" for b in (down, down + self.world_size) if b > 0)
            raise ValueError(
                f"training.batch_size={global_batch} is the global batch and must split evenly over the "
                f"{self.world_size} processes; use {options}, or another --nproc_per_node"
            )
        return global_batch // self.world_size


def rank_seed(seed: int, rank: int) -> int:
    """The global-generator seed of ``rank`` (rank 0 keeps ``seed``, so one process is unchanged)."""
    return seed if rank == 0 else (seed + rank * 1_000_033) % 2**31


def init_distributed(device: str) -> tuple[DistEnv, bool]:
    """Join the torchrun job when this process is in one (nccl on CUDA, gloo on CPU); idempotent.

    Args:
        device: the requested device (``cpu``, ``cuda``).

    Returns:
        ``(env, created)``: ``created`` is True when this call made the process group (then the caller
        ends it with :func:`shutdown`).
    """
    env = DistEnv.from_environ()
    if not env.enabled:
        return env, False
    if dist.is_initialized():
        if dist.get_world_size() != env.world_size:
            raise RuntimeError(f"a process group of {dist.get_world_size()} exists but WORLD_SIZE={env.world_size}")
        return env, False
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise KeyError(f"WORLD_SIZE={env.world_size} but {missing} unset; {LAUNCH_FIX}")
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(torch.device(env.device(device)))
    dist.init_process_group(backend="nccl" if cuda else "gloo", rank=env.rank, world_size=env.world_size)
    return env, True


def barrier() -> None:
    """Wait for every rank (no-op outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def shutdown(created: bool) -> None:
    """Barrier, then destroy the process group when ``created`` (what :func:`init_distributed` returned)."""
    if created and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def session(device: str) -> Iterator[DistEnv]:
    """Hold the process group for a whole run (train, evaluate, write on rank 0), then end it.

    Example:
        ``with session(config.training.device) as env: ... if env.is_main: write_result(...)``
    """
    env, created = init_distributed(device)
    try:
        yield env
    except BaseException:
        if created and dist.is_initialized():
            dist.destroy_process_group()  # no barrier: the other ranks may never reach it
        raise
    shutdown(created)


# --------------------------------------------------------------------------------------------------
# model, loss, evaluation


def _skips_layers(model: nn.Module) -> bool:
    """Whether a module in training mode drops whole layers at random (transformers' ``layerdrop``), so that
    the set of parameters reached changes from step to step."""
    for module in model.modules():
        if not module.training:
            continue
        config = getattr(module, "config", None)
        for name in ("layerdrop", "encoder_layerdrop"):
            value = getattr(module, name, None)
            value = getattr(config, name, 0.0) if value is None else value
            if isinstance(value, (int, float)) and value > 0:
                return True
    return False


def unused_parameters(model: nn.Module, wave: torch.Tensor) -> list[str]:
    """Trainable parameters that one training-mode forward of ``wave`` ``(B, N)`` does not reach.

    The probe leaves no trace: the random generators are restored, buffers (batch-norm statistics) put back
    and ``.grad`` untouched.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    devices = [wave.device.index or 0] if wave.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.enable_grad():
        out = model(wave)  # (B, K)
        grads = torch.autograd.grad(out.float().sum(), [p for _, p in named], allow_unused=True)
    with torch.no_grad():
        for n, b in model.named_buffers():
            b.copy_(buffers[n])
    return [n for (n, _), g in zip(named, grads, strict=True) if g is None]


def wrap_model(model: nn.Module, env: DistEnv, device: str, example: torch.Tensor) -> DistributedDataParallel:
    """Wrap ``model`` in DDP (gradients of the parameters that require grad are all-reduced; the frozen
    backbone is ignored). ``find_unused_parameters`` is turned on only when needed: some trainable parameter
    is not reached by a forward of ``example`` ``(B, N)``, or a module drops layers at random.

    DDP broadcasts rank 0's parameters and buffers once here, so every rank starts from the same state.
    """
    find_unused = _skips_layers(model) or bool(unused_parameters(model, example[:2]))
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def global_mean_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    real: int,
    loss_fn: nn.CrossEntropyLoss,
    world_size: int,
) -> tuple[torch.Tensor, float, float]:
    """This rank's share of the global batch's mean cross-entropy, scaled for DDP's gradient averaging.

    Args:
        logits: ``(b, K)`` this rank's logits (float32).
        target: ``(b,)`` targets.
        real: how many leading items are data (the rest is padding, weight 0).
        loss_fn: the one-process loss (its class ``weight`` and ``label_smoothing`` are used, its mean is not).
        world_size: number of processes.

    Returns:
        ``(loss to backpropagate, this rank's part of the global mean loss, global item count)``; the parts of
        all ranks sum to the one-process batch loss.
    """
    weight = loss_fn.weight
    kept_logits, kept = logits[:real], target[:real]
    summed = F.cross_entropy(
        kept_logits, kept, weight=weight, reduction="sum", label_smoothing=loss_fn.label_smoothing
    ) + 0.0 * logits.sum()  # the padding term keeps every parameter in the graph (zero gradient)
    local = weight[kept].sum() if weight is not None else torch.tensor(float(real), device=logits.device)
    totals = torch.stack([local.detach().double(), torch.tensor(float(real), device=logits.device).double()])
    dist.all_reduce(totals)  # (global denominator, global item count)
    denominator, count = float(totals[0]), float(totals[1])
    assert denominator > 0, "no rank holds data in this global batch"
    return summed * (world_size / denominator), float(summed.detach()) / denominator, count


def all_sum(value: float, device: str) -> float:
    """Sum a scalar over ranks."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t[0])


@torch.no_grad()
def gather_predictions(
    model: nn.Module, loader: ShardLoader, device: str, unpack: Callable = lambda batch: (batch[0], batch[1])
) -> tuple[np.ndarray, np.ndarray]:
    """``(targets (M,), logits (M, K))`` over the whole dataset in the one-process order, each rank scoring
    its shards (call on the unwrapped model: ranks may run different numbers of items).

    Args:
        model: ``forward(wave (b, N)) -> (b, K)``.
        loader: this rank's :class:`ShardLoader` (not shuffled).
        device: where the model is.
        unpack: ``batch -> (wave (b, N), target (b,))``.
    """
    was_training = model.training
    model.eval()
    steps = []
    for step, batch in enumerate(loader):
        wave, target = unpack(batch)
        real = loader.real_count(step)
        logits = model(wave[:real].to(device, non_blocking=True)).float().cpu().numpy() if real else None
        steps.append((torch.as_tensor(target[:real]).numpy(), logits))
    model.train(was_training)
    ranks: list = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, steps)
    targets, scores = [], []
    for step in zip(*ranks, strict=True):  # step k: every rank's shard of global batch k, in rank order
        for y, s in step:
            if s is not None:
                targets.append(y)
                scores.append(s)
    return np.concatenate(targets), np.concatenate(scores)
