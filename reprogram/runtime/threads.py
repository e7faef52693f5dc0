"""Thread and DataLoader settings that keep every core busy without oversubscribing them.

PyTorch's intra-op pool defaults to one thread per core; every DataLoader worker is another busy process.
:func:`configure_threads` gives the model ``cores - workers`` intra-op threads (cores = this process's CPU
affinity, which respects ``taskset`` and container limits), and :func:`make_loader`'s workers run one thread
each (torch and the BLAS/OpenMP pools of numpy and scikit-learn, via threadpoolctl).

:func:`make_loader` returns an :class:`EpochLoader`: a DataLoader whose sampler draws the order of epoch ``e``
from ``(seed, e)`` only and tells the dataset the epoch inside the worker that fetches each item, so batches
are identical with 0 or N workers, with persistent workers, and after resuming at any epoch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def available_cores() -> int:
    """CPU cores this process may run on (``os.sched_getaffinity``; ``os.cpu_count`` where unavailable)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadPlan:
    """The thread settings applied by :func:`configure_threads`.

    Attributes:
        cores: usable cores.
        num_workers: DataLoader worker processes (one thread each).
        intra_op: torch intra-op threads of this process.
        interop: torch inter-op threads (``None``: left as it was, torch allows setting it once per process).
    """

    cores: int
    num_workers: int
    intra_op: int
    interop: int | None


def configure_threads(num_workers: int, cores: int | None = None) -> ThreadPlan:
    """Give this process ``cores - num_workers`` intra-op threads (at least 1) and as many inter-op threads.

    Args:
        num_workers: DataLoader workers that will run beside the model (each uses one core at most).
        cores: usable cores (default :func:`available_cores`).

    Returns:
        The applied :class:`ThreadPlan`.
    """
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    cores = available_cores() if cores is None else int(cores)
    intra = max(1, cores - num_workers)
    torch.set_num_threads(intra)
    interop: int | None = intra
    if torch.get_num_interop_threads() != intra:
        try:
            torch.set_num_interop_threads(intra)
        except RuntimeError:  # already set, or parallel work has started: torch allows it only once
            interop = None
    return ThreadPlan(cores, num_workers, intra, interop)


def auto_workers(dataset: Dataset, device: str | torch.device = "cpu", cores: int | None = None) -> int:
    """Worker count that helps: none on CPU when items come from memory (the model needs every core and a
    batch costs microseconds to gather), else up to a quarter of the cores (CPU) or ``cores - 1`` (max 8, GPU).

    Args:
        dataset: the dataset; ``dataset.in_memory`` (True: nothing to decode) is read when present.
        device: where the model runs.
        cores: usable cores (default :func:`available_cores`).
    """
    cores = available_cores() if cores is None else int(cores)
    cheap = bool(getattr(dataset, "in_memory", False))
    if str(device).startswith("cuda"):
        return min(cores - 1, 2 if cheap else 8)
    return 0 if cheap else min(cores - 1, max(1, cores // 4))


def worker_init(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread for torch and the BLAS/OpenMP pools; seed python and numpy
    from the worker's torch seed (derived from the loader's seeded generator)."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)


class EpochSampler(Sampler):
    """Yields ``(epoch, index)``: the order of epoch ``e`` is a permutation seeded by ``(seed, e)`` (or data order).

    Args:
        size: dataset length.
        shuffle: permute each epoch.
        seed: the run's seed.
    """

    def __init__(self, size: int, shuffle: bool, seed: int) -> None:
        self.size, self.shuffle, self.seed, self.epoch = int(size), bool(shuffle), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch * 7919 + 17) % 2**63)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = range(self.size)
        return ((self.epoch, i) for i in order)

    def __len__(self) -> int:
        return self.size


class _EpochItems(Dataset):
    """Fetches ``(epoch, index)``: sets the wrapped dataset's epoch (in whichever process runs) then reads it."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.has_epoch = hasattr(dataset, "set_epoch")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]):
        epoch, index = item
        if self.has_epoch and getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class EpochLoader:
    """A DataLoader over ``(epoch, index)`` items; call :meth:`set_epoch` before iterating each epoch.

    Attributes:
        loader: the underlying ``torch.utils.data.DataLoader``.
        sampler: its :class:`EpochSampler`.
        num_workers: worker processes in use.
    """

    def __init__(self, loader: DataLoader, sampler: EpochSampler) -> None:
        self.loader, self.sampler, self.num_workers = loader, sampler, loader.num_workers

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order (and, for datasets with ``set_epoch``, random crops) is drawn."""
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator:
        return iter(self.loader)

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def dataset(self) -> Dataset:
        return self.loader.dataset.dataset


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool,
    seed: int,
    num_workers: int | str = "auto",
    device: str | torch.device = "cpu",
    *,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
    prefetch_factor: int = 2,
    persistent_workers: bool = True,
    preload: bool = True,
) -> EpochLoader:
    """A seeded, worker-count-independent loader.

    Args:
        dataset: items ``(x, target, ...)``; datasets with ``set_epoch`` get the epoch in the fetching process.
        batch_size: items per batch.
        shuffle: a new permutation per epoch, drawn from ``(seed, epoch)``.
        seed: the run's seed.
        num_workers: worker processes, or ``"auto"`` (:func:`auto_workers`).
        device: where batches go; memory is pinned only for CUDA.
        collate_fn: batch assembly (default: torch's).
        drop_last: drop the last incomplete batch.
        prefetch_factor: batches each worker prepares ahead.
        persistent_workers: keep workers between epochs (no re-fork, no re-reading caches).
        preload: with workers, call ``dataset.preload()`` first (when it has one), so clips are decoded once in
            this process and shared by the forked workers instead of decoded by each.

    Returns:
        The :class:`EpochLoader`. Call ``configure_threads(loader.num_workers)`` once so the model's threads
        and the workers together match the cores.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers == "auto":
        if preload and hasattr(dataset, "preload"):
            dataset.preload()
        workers = auto_workers(dataset, device)
    elif isinstance(num_workers, int) and num_workers >= 0:
        workers = num_workers
        if workers and preload and hasattr(dataset, "preload"):
            dataset.preload()
    else:
        raise ValueError(f"num_workers must be a non-negative int or 'auto', got {num_workers!r}")
    sampler = EpochSampler(len(dataset), shuffle, seed)
    on_cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    extra = {"prefetch_factor": prefetch_factor, "persistent_workers": persistent_workers} if workers else {}
    loader = DataLoader(
        _EpochItems(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        pin_memory=on_cuda,
        drop_last=drop_last,
        worker_init_fn=worker_init if workers else None,
        generator=torch.Generator().manual_seed(int(seed) % 2**63),
        **extra,
    )
    return EpochLoader(loader, sampler)
