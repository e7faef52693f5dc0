"""One training run of ``tests/test_distributed.py``: launched by torchrun on 2 processes, or called in-process.

The model follows the loop's contract and has every part a real method has: a frozen "backbone" (parameters
that do not require grad, a batch-norm buffer in eval mode), a trainable program in front of it, a trainable
head behind it, and a data-fitted buffer refitted by ``start_epoch`` (like the FLM / ILM label mappers). No
dropout: dropout masks are drawn per rank, so only a dropout-free model can match one process exactly.

Usage: ``torchrun --standalone --nproc_per_node 2 -m tests.ddp_worker OUT_DIR`` writes ``OUT_DIR/rank<r>.pt``.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset

from reprogram.experiment.config import TrainingConfig
from reprogram.experiment.train import train

SR, K = 2000, 3
CLASSES = ["a", "b", "c"]
#: 21 training clips at global batch 4: the last global batch has one clip, so rank 1 gets a padding item
CONFIG = {
    "epochs": 2,
    "batch_size": 4,
    "lr": 0.05,
    "patience": None,
    "warmup_fraction": 0.25,
    "grad_clip": 1.0,
    "balanced_loss": True,
    "label_smoothing": 0.1,
    "select_metric": "balanced_accuracy",
}


class Clips(Dataset):
    """Noisy tones whose frequency encodes an imbalanced class; random shifts drawn from ``(seed, epoch, index)``
    as :class:`~reprogram.data.dataset.WaveformDataset` draws its crops."""

    def __init__(self, n: int, seed: int) -> None:
        g = np.random.default_rng(seed)
        self.targets = g.choice(K, n, p=[0.6, 0.3, 0.1])
        t = np.arange(SR // 4) / SR
        x = np.stack([np.sin(2 * math.pi * (150 + 250 * c) * t + g.uniform(0, 6)) for c in self.targets])
        self.x = (x + g.normal(0, 2.0, x.shape)).astype(np.float32)  # (n, N)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        shift = int(np.random.default_rng([self.seed, self.epoch, i]).integers(0, 40))
        return torch.roll(torch.from_numpy(self.x[i]), shift), int(self.targets[i])


class TinyReprogrammed(nn.Module):
    """``forward(wave (B, N)) -> (B, K)``: program (per-bin gain) -> frozen projection -> head + fitted prior."""

    def __init__(self) -> None:
        super().__init__()
        self.program = nn.Parameter(torch.ones(65))  # (F,) gain on the log spectrum
        self.backbone = nn.Sequential(nn.Linear(65, 16), nn.BatchNorm1d(16), nn.Tanh()).eval()
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.head = nn.Linear(16, K)
        self.register_buffer("prior", torch.zeros(K, 16))  # fitted class means of the backbone features
        self.batch_sizes: list[int] = []

    def train(self, mode: bool = True) -> TinyReprogrammed:
        super().train(mode)
        self.backbone.eval()  # frozen: never in training mode
        return self

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(wave, 128, 64, window=torch.hann_window(128), return_complex=True).abs().pow(2)  # (B, F, T)
        logspec = nn.functional.layer_norm(torch.log(spec.mean(-1) + 1e-6), (65,))  # (B, F)
        return self.backbone(logspec * self.program)  # (B, 16)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.batch_sizes.append(len(wave))
        f = self.features(wave)  # (B, 16)
        return self.head(f) + 0.5 * f @ self.prior.T  # (B, K)

    @torch.no_grad()
    def start_epoch(self, loader, epoch: int) -> None:
        feats, targets = zip(*((self.features(w), y) for w, y, *_ in loader), strict=True)
        f, y = torch.cat(feats), torch.cat(targets)
        self.prior.copy_(torch.stack([f[y == c].mean(0) if (y == c).any() else torch.zeros(16) for c in range(K)]))


def make_model() -> TinyReprogrammed:
    torch.manual_seed(123)
    model = TinyReprogrammed()
    with torch.no_grad():
        model.backbone[1].running_mean.uniform_(-0.1, 0.1)
    return model


def run(checkpoint_dir: Path | None, seed: int = 5) -> dict:
    """Train on 21 / 11 clips with :data:`CONFIG`; return what the test compares."""
    model = make_model()
    frozen = {n: p.detach().clone() for n, p in model.backbone.named_parameters()}
    result = train(
        model, Clips(21, 0), Clips(11, 1), CLASSES, TrainingConfig(**CONFIG), seed=seed,
        checkpoint_dir=checkpoint_dir, progress=False,
    )
    return {
        "state": result.state,
        "best_val": result.best_val,
        "best_epoch": result.best_epoch,
        "history": [{k: v for k, v in h.items() if k != "seconds"} for h in result.history],
        "batch_sizes": model.batch_sizes,
        "frozen_unchanged": all(torch.equal(frozen[n], p) for n, p in model.backbone.named_parameters()),
        "process_group_ended": not dist.is_initialized(),
    }


if __name__ == "__main__":
    out = Path(sys.argv[1])
    outcome = run(out / "checkpoint")
    torch.save(outcome, out / f"rank{os.environ['RANK']}.pt")
