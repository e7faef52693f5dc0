"""``simclr``: the in-domain self-supervised reference (as in HARES): a small spectrogram CNN pretrained with SimCLR
on the training part's own unlabelled audio, then the same logistic probe as every other feature method.

Only the training part's clips are used for pretraining (never a validation or test clip; the result records
their table rows under ``training.pretraining.clips``); background windows are rows of the table (Raven /
Hainan ``background_windows``), so where a table gives them they are pretrained on too and serve as the
mixing pool. Two views of each clip are drawn from its log-mel spectrogram (dB, computed once per clip by the
toolkit's front end, :class:`reprogram.transforms.frontend.LogMel`): a random crop in time, a gain
(a dB offset), the mix with another training clip's audio (background when the table marks any) at a random
weight in the power domain, and SpecAugment-style frequency and time masks. The encoder is trained with the
NT-Xent loss (Chen et al. 2020) for a fixed number of epochs (no selection, nothing seen but training audio);
its globally pooled features of every clip's whole (centre-cropped) spectrogram are then probed with ``C`` chosen
on validation (:func:`reprogram.methods.probes.fit_linear_probe`). Deterministic given the seed (and threads).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reprogram.methods.features import FeatureMethod, fit_features


@dataclass(frozen=True)
class SimclrConfig:
    """Pretraining settings (``method.options``).

    Args:
        epochs: passes over the training clips. batch_size: clips per step (2x views).
        lr, weight_decay: AdamW settings (cosine decay to 0, no warm-up).
        temperature: NT-Xent temperature.
        width: channels of the first conv block (doubled per block, 4 blocks: features ``8 * width``).
        projection: output size of the projection head (dropped after pretraining).
        n_mels, hop_ms: the log-mel front end. crop_seconds: length of a view.
        gain_db: views are offset by a gain in ``[-gain_db, gain_db]``.
        mix: largest weight of the mixed-in clip (power domain). mix_prob: chance a view is mixed.
        freq_mask, time_mask: widest frequency (bands) and time (frames) mask.
    """

    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    width: int = 16
    projection: int = 64
    n_mels: int = 64
    hop_ms: float = 20.0
    crop_seconds: float = 2.0
    gain_db: float = 6.0
    mix: float = 0.5
    mix_prob: float = 0.5
    freq_mask: int = 8
    time_mask: int = 16

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError(f"simclr: epochs={self.epochs} must be >= 1 and batch_size={self.batch_size} >= 2")
        if self.temperature <= 0 or self.crop_seconds <= 0 or self.width < 1:
            raise ValueError("simclr: temperature, crop_seconds and width must be positive")


class SpectrogramCNN(nn.Module):
    """Four conv blocks (3x3 conv, batch norm, ReLU, 2x2 max pool) on ``(B, 1, F, T)``, mean-pooled to ``(B, 8w)``."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        blocks, c_in = [], 1
        for k in range(4):
            c_out = width * 2**k
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in = c_out
        self.net = nn.Sequential(*blocks)
        self.feature_dim = c_in

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Args: spec: ``(B, F, T)`` standardised log-mel. Returns: ``(B, 8 * width)``."""
        return self.net(spec.unsqueeze(1)).mean(dim=(2, 3))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent loss of two ``(B, P)`` batches of projections whose rows pair up (each row's positive is its twin)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2B, P)
    sim = z @ z.T / temperature  # (2B, 2B)
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(sim, target)


class Augment:
    """Two-view augmentations of ``(M, F, T)`` dB spectrograms (crop in time, gain, mixing, masks)."""

    def __init__(self, specs: torch.Tensor, pool: list[int], config: SimclrConfig, frames: int) -> None:
        self.specs, self.pool, self.c, self.frames = specs, pool, config, frames

    def view(self, index: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """``(B,)`` clip indices -> ``(B, F, frames)`` augmented dB spectrograms."""
        c, (_, n_f, n_t), b = self.c, self.specs.shape, len(index)

        def crops(rows: torch.Tensor) -> torch.Tensor:
            start = torch.randint(0, n_t - self.frames + 1, (b,), generator=gen)
            return torch.stack([self.specs[r, :, s : s + self.frames] for r, s in zip(rows.tolist(), start.tolist(),
                                                                                       strict=True)])

        x = crops(index) + (torch.rand(b, 1, 1, generator=gen) * 2 - 1) * c.gain_db  # (B, F, frames)
        other = torch.tensor(self.pool)[torch.randint(0, len(self.pool), (b,), generator=gen)]
        weight = torch.rand(b, 1, 1, generator=gen) * c.mix * (torch.rand(b, 1, 1, generator=gen) < c.mix_prob)
        x = 10 * torch.log10(10 ** (x / 10) + weight * 10 ** (crops(other) / 10))  # mixed in the power domain
        low = x.amin(dim=(1, 2), keepdim=True)
        for axis, size, widest in ((1, n_f, c.freq_mask), (2, self.frames, c.time_mask)):
            width = torch.randint(0, widest + 1, (b,), generator=gen)
            start = (torch.rand(b, generator=gen) * (size - width + 1)).long()
            pos = torch.arange(size).view(1, -1)
            masked = (pos >= start.view(-1, 1)) & (pos < (start + width).view(-1, 1))  # (B, size)
            x = torch.where(masked.unsqueeze(3 - axis), low, x)
        return x


class SimclrFeatures(FeatureMethod):
    """The SimCLR encoder's pooled features of each clip's whole log-mel, probed like every feature method."""

    def __init__(self, config: SimclrConfig, sample_rate: int, seed: int, cs=None) -> None:
        from reprogram.transforms.frontend import LogMel, LogMelConfig

        self.config, self.seed, self.cs = config, seed, cs
        self.frontend = LogMel(LogMelConfig(n_mels=config.n_mels, hop_ms=config.hop_ms), sample_rate)
        self.sample_rate = sample_rate
        torch.manual_seed(seed)
        self.encoder = SpectrogramCNN(config.width)
        self.head = nn.Sequential(nn.Linear(self.encoder.feature_dim, self.encoder.feature_dim), nn.ReLU(),
                                  nn.Linear(self.encoder.feature_dim, config.projection))
        self.mean, self.std = 0.0, 1.0
        self.selection, self.history = {}, []

    @torch.no_grad()
    def spectrograms(self, waves: torch.Tensor) -> torch.Tensor:
        """``(M, N)`` -> ``(M, n_mels, T)`` dB log-mel (in batches)."""
        return torch.cat([self.frontend(waves[s : s + 64]) for s in range(0, len(waves), 64)])

    def pretrain(self, waves: torch.Tensor, pool: list[int]) -> list[float]:
        """SimCLR on ``(M, N)`` training waveforms; ``pool``: rows mixed into views. Returns each epoch's mean loss."""
        c = self.config
        specs = self.spectrograms(waves)  # (M, F, T)
        self.mean, self.std = float(specs.mean()), float(specs.std().clamp_min(1e-6))
        frames = min(specs.shape[-1], max(16, round(c.crop_seconds * 1000 / c.hop_ms)))
        augment = Augment(specs, pool, c, frames)
        gen = torch.Generator().manual_seed(self.seed)
        params = [*self.encoder.parameters(), *self.head.parameters()]
        opt = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        m = len(waves)
        batch = min(c.batch_size, m)
        steps_per_epoch = max(1, m // batch)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, c.epochs * steps_per_epoch)
        self.encoder.train(), self.head.train()
        for _ in range(c.epochs):
            order, losses = torch.randperm(m, generator=gen), []
            for s in range(steps_per_epoch):
                index = order[s * batch : (s + 1) * batch]
                v1, v2 = ((augment.view(index, gen) - self.mean) / self.std for _ in range(2))
                loss = nt_xent(self.head(self.encoder(v1)), self.head(self.encoder(v2)), c.temperature)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
            self.history.append(float(np.mean(losses)))
        self.encoder.eval()
        return self.history

    @torch.no_grad()
    def featurize(self, dataset, cache_dir=None) -> np.ndarray:
        """``(M, 8w)`` pooled encoder features of each clip's whole spectrogram (no disk cache: they depend on the
        fold's pretraining)."""
        self.encoder.eval()
        waves = torch.stack([dataset[i][0] for i in range(len(dataset))])  # (M, N)
        specs = (self.spectrograms(waves) - self.mean) / self.std
        return torch.cat([self.encoder(specs[s : s + 64]) for s in range(0, len(specs), 64)]).numpy()

    def fit(self, x_train, y_train, x_val, y_val) -> SimclrFeatures:
        from reprogram.methods.probes import DEFAULT_CS, fit_linear_probe

        x, y, n = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), len(x_train)
        result = fit_linear_probe(x, y, range(n), range(n, len(x)), cs=self.cs or DEFAULT_CS, seed=self.seed)
        self.model, self.classes_, self.feature_dim = result.model, result.model.classes_, int(x.shape[1])
        self.selection = {"C": result.C, "val_balanced_accuracy_by_C": {str(k): v for k, v in result.val_by_C.items()}}
        return self


class SelfSupervisedFitting:
    """The kind of :class:`SimclrFeatures`: pretrain on the training part's clips only, then featurize every clip,
    fit the probe on train (``C`` on val) and score every part (:func:`fit_features`). Rank 0 alone fits."""

    parallel = False

    def fit(self, built, context) -> dict:
        method = built.features
        train = list(context.rows["train"])
        held_out = {i for name, idx in context.rows.items() if name != "train" for i in idx}
        assert not held_out & set(train), "a validation / test clip is in the pretraining set"
        waves = torch.stack([context.full[i][0] for i in train])  # (M_train, N), centre crops of training clips
        marked = [k for k, i in enumerate(train) if context.table[i].meta.get("background") == "1"]
        pool = marked or list(range(len(train)))
        start = time.perf_counter()
        history = method.pretrain(waves, pool)
        seconds = time.perf_counter() - start
        if context.is_main and context.folder is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in method.encoder.state_dict().items()},
                      str(context.folder / "encoder.safetensors"))
        ext = {"external": context.eval_sets["external"]} if "external" in context.eval_sets else {}
        out = fit_features(built, context.full, context.rows, ext, context.classes, context.positive, None)
        encoder = sum(p.numel() for p in method.encoder.parameters())
        out["params"]["components"]["pretrained_encoder"] = encoder
        out["training"]["pretraining"] = {
            "clips": train, "mixing_pool": "background windows" if marked else "training clips",
            "loss_by_epoch": history, "wall_time_s": seconds, "encoder_parameters": encoder,
            "config": asdict(method.config),
        }
        return out


SIMCLR = SelfSupervisedFitting()


def build_simclr(config, classes: list):
    """SimCLR reference: ``method.options`` are :class:`SimclrConfig` fields plus ``cs``; no backbone, no budget."""
    from reprogram.methods.base import DEFAULT_SAMPLE_RATE, Built

    opts = dict(config.method.options)
    cs = opts.pop("cs", None)
    known = {f.name for f in fields(SimclrConfig)}
    if set(opts) - known or config.method.budget is not None:
        raise ValueError(f"simclr takes options {sorted(known | {'cs'})} and no budget; got {sorted(opts)}, "
                         f"budget={config.method.budget}")
    rate = int(config.data.sample_rate or DEFAULT_SAMPLE_RATE)
    features = SimclrFeatures(SimclrConfig(**opts), rate, config.seed, cs)
    return Built(None, rate, "features", {}, features=features, kind=SIMCLR)
