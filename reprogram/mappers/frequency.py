"""Label mappings fixed by assignment: random (Elsayed et al. 2018), frequency (FLM) and iterative (ILM).

All three pick, for each target class k, a set of ``per_class`` source labels and output the mean of
their logits: ``out[:, k] = mean_j source[:, assignment[k, j]]``. No source label serves two classes
(the assignment is injective); with ``per_class=1`` the mapping is one-to-one.

FLM (Chen et al. 2023, after Tsai et al. 2020) counts, on training data seen through the current program,
how often each source label is the top prediction for each target class, and takes the assignment that
maximises the total count (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``, one round per
``per_class``). ILM is the same fit repeated at the start of every epoch, so the mapping follows the
program as it trains.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from reprogram.mappers.base import LabelMapper


class NotFittedError(ValueError):
    """A data-fitted mapper was used before :meth:`fit`."""


class AssignmentMapping(LabelMapper):
    """Mean of an injective set of source logits per target class (no trainable parameters).

    Args:
        num_sources: S.
        num_targets: K.
        per_class: source labels per target class (``per_class * K <= S``).
    """

    def __init__(self, num_sources: int, num_targets: int, per_class: int = 1) -> None:
        super().__init__(num_sources, num_targets)
        if per_class < 1 or per_class * num_targets > num_sources:
            raise ValueError(
                f"{type(self).__name__}: per_class={per_class} x {num_targets} classes needs that many distinct "
                f"source labels but the backbone has {num_sources}; lower per_class or use the 'linear' mapper"
            )
        self.per_class = per_class
        self.register_buffer("assignment", torch.full((num_targets, per_class), -1, dtype=torch.long))  # (K, m)

    def set_assignment(self, assignment: torch.Tensor) -> None:
        """Install a ``(K, per_class)`` assignment, checking that it is injective and in range."""
        assignment = torch.as_tensor(assignment, dtype=torch.long).reshape(self.num_targets, self.per_class)
        flat = assignment.flatten()
        if flat.min() < 0 or flat.max() >= self.num_sources or flat.unique().numel() != flat.numel():
            raise ValueError(f"assignment {assignment.tolist()} is not injective into {self.num_sources} sources")
        self.assignment.copy_(assignment)

    @property
    def is_fitted(self) -> bool:
        """True once an assignment is installed."""
        return int(self.assignment.min()) >= 0

    def forward(self, source: torch.Tensor) -> torch.Tensor:
        """Args: source: ``(B, S)`` logits. Returns: ``(B, K)``."""
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call ReprogrammedModel.fit_mapper(loader) first"
            )
        return source[:, self.assignment].mean(dim=-1)  # (B, K, m) -> (B, K)


class RandomMapping(AssignmentMapping):
    """Fixed random many-to-one mapping (Elsayed et al. 2018): disjoint random source sets, drawn once by seed.

    Args:
        per_class: source labels per target class; default ``S // K`` (every class gets an equal share).
        seed: the draw's seed.
    """

    def __init__(self, num_sources: int, num_targets: int, per_class: int | None = None, seed: int = 0) -> None:
        super().__init__(num_sources, num_targets, per_class or max(1, num_sources // num_targets))
        gen = torch.Generator().manual_seed(seed)
        order = torch.randperm(num_sources, generator=gen)[: num_targets * self.per_class]
        self.set_assignment(order.view(num_targets, self.per_class))


def frequency_assignment(source: torch.Tensor, targets: torch.Tensor, num_targets: int, per_class: int) -> np.ndarray:
    """``(K, per_class)`` source labels maximising how often they are the top prediction for each class.

    Args:
        source: ``(M, S)`` source logits on training data.
        targets: ``(M,)`` integer target classes.
        num_targets: K.
        per_class: rounds of one-to-one assignment; sources used in a round are out of later rounds.

    Ties (e.g. source labels never predicted) are broken by the mean softmax probability per class, weighted
    so that all tie-breakers together stay below one count.
    """
    S = source.shape[1]
    top = source.argmax(dim=1)
    counts = torch.zeros(S, num_targets, dtype=torch.float64)
    counts.index_put_((top, targets.long()), torch.ones(len(top), dtype=torch.float64), accumulate=True)
    probs = torch.zeros(S, num_targets, dtype=torch.float64)
    soft = source.double().softmax(dim=1)  # (M, S)
    for k in range(num_targets):
        rows = soft[targets == k]
        if len(rows):
            probs[:, k] = rows.mean(dim=0)
    score = (counts + probs / (2 * num_targets * per_class)).numpy()  # (S, K)
    taken = np.zeros(S, dtype=bool)
    out = np.zeros((num_targets, per_class), dtype=np.int64)
    for j in range(per_class):
        free = np.flatnonzero(~taken)
        rows, cols = linear_sum_assignment(score[free], maximize=True)
        out[cols, j] = free[rows]
        taken[free[rows]] = True
    return out


class FrequencyMapping(AssignmentMapping):
    """FLM: fitted once (before training) from top-1 frequencies on the training data. One-to-one by default."""

    needs_fit = True

    def fit(self, source: torch.Tensor, targets: torch.Tensor) -> None:
        """Args: source: ``(M, S)`` logits seen through the program; targets: ``(M,)`` classes in ``[0, K)``."""
        if source.ndim != 2 or source.shape[1] != self.num_sources or len(source) != len(targets):
            raise ValueError(
                f"fit expects (M, {self.num_sources}) sources and (M,) targets, got "
                f"{tuple(source.shape)} and {tuple(targets.shape)}"
            )
        if targets.min() < 0 or targets.max() >= self.num_targets:
            raise ValueError(f"targets must lie in [0, {self.num_targets}); got {targets.min()}..{targets.max()}")
        self.set_assignment(torch.from_numpy(frequency_assignment(source, targets, self.num_targets, self.per_class)))


class IterativeMapping(FrequencyMapping):
    """ILM (Chen et al. 2023): the FLM fit repeated at the start of every epoch with the current program."""

    refit_every_epoch = True
