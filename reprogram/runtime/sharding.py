"""Data-parallel batches: every rank reads its contiguous shard of each global batch, drawn in the same order on
every rank (:class:`ShardBatchSampler`), so the ranks together see exactly the one-process epoch. Used by
:func:`reprogram.experiment.train.train` under ``torchrun`` (:mod:`reprogram.runtime.distributed`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reprogram.runtime.distributed import DistEnv
from reprogram.runtime.threads import EpochLoader, EpochSampler, _EpochItems, auto_workers, worker_init


def shard_bounds(size: int, world_size: int, rank: int) -> tuple[int, int]:
    """``[start, stop)`` of ``rank``'s contiguous shard of a batch of ``size`` (sizes differ by at most 1)."""
    base, extra = divmod(size, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class ShardBatchSampler(Sampler):
    """Rank ``rank``'s shard of every global batch of ``sampler``'s epoch order.

    Args:
        sampler: the one-process order (``(epoch, index)`` items).
        global_batch: items per global batch (divisible by ``world_size``).
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(self, sampler: EpochSampler, global_batch: int, rank: int, world_size: int) -> None:
        self.sampler, self.global_batch, self.rank, self.world_size = sampler, global_batch, rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = list(self.sampler)
        for start in range(0, len(order), self.global_batch):
            chunk = order[start : start + self.global_batch]
            lo, hi = shard_bounds(len(chunk), self.world_size, self.rank)
            yield chunk[lo:hi] or chunk[-1:]  # an empty shard re-reads one item; real_count() says it is padding

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.global_batch)

    def real_count(self, step: int) -> int:
        """Items of this rank's batch at ``step`` that are data, not padding (a padded batch has 0)."""
        size = min(self.global_batch, len(self.sampler) - step * self.global_batch)
        lo, hi = shard_bounds(size, self.world_size, self.rank)
        return hi - lo


class ShardLoader(EpochLoader):
    """An :class:`~reprogram.runtime.threads.EpochLoader` over this rank's shards; also says which items are padding."""

    def __init__(self, loader: DataLoader, sampler: EpochSampler, batches: ShardBatchSampler) -> None:
        super().__init__(loader, sampler)
        self.batches = batches

    def real_count(self, step: int) -> int:
        """Real (not padding) items of this rank's batch ``step``."""
        return self.batches.real_count(step)


def make_shard_loader(
    dataset: Dataset,
    global_batch: int,
    shuffle: bool,
    seed: int,
    env: DistEnv,
    num_workers: int | str = 0,
    device: str = "cpu",
    *,
    collate_fn: Callable | None = None,
) -> ShardLoader:
    """Like :func:`reprogram.runtime.threads.make_loader` (same order, crops, workers, pinning) but yields this rank's
    shard of each global batch.

    Args:
        dataset: items ``(wave (N,), target, ...)``.
        global_batch: the one-process batch size (``training.batch_size``).
        shuffle: a new permutation per epoch, drawn from ``(seed, epoch)`` exactly as the one-process loader.
        seed: the run's seed.
        env: this process's :class:`DistEnv`.
        num_workers: worker processes of this rank, or ``"auto"``.
        device: where batches go; memory is pinned only for CUDA.
        collate_fn: batch assembly (default: torch's).
    """
    env.shard_size(global_batch)  # raises unless divisible
    if num_workers == "auto":
        workers = auto_workers(dataset, device, env.cores())
    elif isinstance(num_workers, int) and num_workers >= 0:
        workers = num_workers
    else:
        raise ValueError(f"num_workers must be a non-negative int or 'auto', got {num_workers!r}")
    if workers and hasattr(dataset, "preload"):
        dataset.preload()  # decoded once here, shared by the forked workers
    sampler = EpochSampler(len(dataset), shuffle, seed)
    batches = ShardBatchSampler(sampler, global_batch, env.rank, env.world_size)
    extra = {"prefetch_factor": 2, "persistent_workers": True} if workers else {}
    loader = DataLoader(
        _EpochItems(dataset),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=str(device).startswith("cuda") and torch.cuda.is_available(),
        worker_init_fn=worker_init if workers else None,
        generator=torch.Generator().manual_seed(int(seed) % 2**63),
        **extra,
    )
    return ShardLoader(loader, sampler, batches)
