"""Linear probes on frozen speech-encoder features: which layer carries call-type / caller information.

Nothing upstream of a probe trains, so every clip's features are computed ONCE (:func:`pooled_features`:
the masked mean of every hidden state, ``(M, L, D)``, kept in memory, or with ``cache_dir`` stored once on
disk by :func:`reprogram.runtime.cache.cached_features`) and every probe, fold, seed and hyper-parameter reuses them.

Probes are scikit-learn ``LogisticRegression`` (multinomial, L-BFGS, ``class_weight="balanced"`` because the
gibbon tasks are imbalanced) on standardised features: a convex problem solved to convergence, so the
result does not depend on a learning-rate schedule or seed the way an SGD-trained torch probe would.
The inverse regularisation ``C`` is chosen on the validation part only; test scores are reported for the
chosen ``C`` and never used for selection. The weighted-sum probe (SUPERB) is not convex in the layer
weights and is trained by the one training loop on the same cached features (:func:`train_weighted_sum_probe`,
the implementation of the runner's ``weighted_probe``, :mod:`reprogram.runtime.prefix`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from torch.utils.data import DataLoader, Dataset

from backbones.base import Backbone
from backbones.hf_speech import masked_mean
from reprogram.mappers.heads import WeightedSumHead

DEFAULT_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0, 10.0)


def pooled_features(
    backbone: Backbone,
    dataset: Dataset,
    batch_size: int = 8,
    cache_dir: str | os.PathLike[str] | None = None,
) -> torch.Tensor:
    """Masked mean of every hidden state for every clip, computed once in eval mode.

    Args:
        backbone: a speech backbone returning ``hidden_states``.
        dataset: items ``(wave (N,), target, ...)``; clips of unequal length are zero-padded per batch and
            their lengths passed to the backbone, so padding never enters a clip's features.
        batch_size: clips per forward pass.
        cache_dir: a cache folder: the features are read from (or computed once into) the disk cache of
            :func:`reprogram.runtime.cache.cached_features`, keyed by the dataset's identity and the backbone's
            weights, so other seeds, folds and probes never re-run the encoder. The dataset must then be a
            ``WaveformDataset`` with a deterministic crop (or an ``(M, N)`` array). ``None``: computed in memory.

    Returns:
        ``(M, L, D)`` float32 on the CPU, in dataset order.
    """
    if cache_dir is not None:
        from reprogram.runtime.cache import cached_features

        fs = cached_features(backbone, dataset, layer="all", batch_size=batch_size, cache_dir=cache_dir)
        if fs.hidden is None:
            raise ValueError(f"{getattr(backbone, 'name', 'backbone')} returns no hidden states; probes need a "
                             "speech encoder")
        return torch.from_numpy(np.array(fs.hidden, dtype=np.float32))  # (M, L, D), a writable copy
    return _pooled_in_memory(backbone, dataset, batch_size)


@torch.no_grad()
def _pooled_in_memory(backbone: Backbone, dataset: Dataset, batch_size: int) -> torch.Tensor:
    was_training = backbone.training
    backbone.eval()
    out = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_pad_collate)
    for wave, lengths in loader:
        result = backbone(wave, lengths)
        if result.hidden_states is None:
            raise ValueError(f"{getattr(backbone, 'name', 'backbone')} returns no hidden states; probes need a "
                             "speech encoder")
        out.append(torch.stack([masked_mean(h, result.mask) for h in result.hidden_states], dim=1).float().cpu())
    backbone.train(was_training)
    return torch.cat(out)  # (M, L, D)


def _pad_collate(batch: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
    waves = [item[0] if isinstance(item, (tuple, list)) else item for item in batch]
    lengths = torch.tensor([w.shape[0] for w in waves])
    padded = torch.zeros(len(waves), int(lengths.max()))  # (B, N)
    for i, w in enumerate(waves):
        padded[i, : w.shape[0]] = torch.as_tensor(w)
    return padded, lengths


@dataclass
class ProbeResult:
    """A probe fitted with the validation-selected ``C``.

    Attributes:
        C: the selected inverse regularisation strength.
        val_balanced_accuracy: validation score at ``C`` (used for selection).
        test_balanced_accuracy: test score at ``C`` (reported, never used for selection); None without test rows.
        val_by_C: validation score of every ``C`` tried.
        model: the fitted scaler + logistic-regression pipeline.
        trainable_parameters: ``D * K + K`` (weights and biases of the linear map).
    """

    C: float
    val_balanced_accuracy: float
    test_balanced_accuracy: float | None
    val_by_C: dict[float, float]
    model: Pipeline = field(repr=False)
    trainable_parameters: int = 0


def _check_parts(y: np.ndarray, train: Sequence[int], val: Sequence[int]) -> None:
    if len(train) == 0 or len(val) == 0:
        raise ValueError("a probe needs non-empty train and validation parts (select on validation, never test)")
    if len(np.unique(y[list(train)])) < 2:
        raise ValueError("the training part holds a single class; use a split with every class in train")


def fit_linear_probe(
    features: np.ndarray | torch.Tensor,
    targets: Sequence[int],
    train: Sequence[int],
    val: Sequence[int],
    test: Sequence[int] = (),
    cs: Sequence[float] = DEFAULT_CS,
    seed: int = 0,
) -> ProbeResult:
    """Logistic-regression probe on ``(M, D)`` features; ``C`` selected by validation balanced accuracy.

    Args:
        features: ``(M, D)`` cached features.
        targets: ``(M,)`` integer classes.
        train: training rows; val: validation rows; test: test rows (scored only).
        cs: candidate ``C`` values.
        seed: solver seed (L-BFGS is deterministic; kept for provenance).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets)
    _check_parts(y, train, val)
    scores, models = {}, {}
    for c in cs:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced",
                                                                   random_state=seed))
        model.fit(x[list(train)], y[list(train)])
        scores[c] = float(balanced_accuracy_score(y[list(val)], model.predict(x[list(val)])))
        models[c] = model
    best = max(cs, key=lambda c: (scores[c], -c))  # ties: the stronger regularisation
    test_score = None
    if len(test):
        test_score = float(balanced_accuracy_score(y[list(test)], models[best].predict(x[list(test)])))
    k = len(models[best][-1].classes_)
    params = x.shape[1] * (k if k > 2 else 1) + (k if k > 2 else 1)
    return ProbeResult(best, scores[best], test_score, scores, models[best], params)


@dataclass
class LayerProbeReport:
    """Per-layer probes: ``results[l]`` probes hidden state ``l`` (0 = the embedding output).

    Attributes:
        results: one :class:`ProbeResult` per hidden state.
        best_layer: the layer with the highest VALIDATION balanced accuracy (ties: the earlier layer).
    """

    results: list[ProbeResult]
    best_layer: int

    def table(self) -> list[dict]:
        """One row per layer: layer, C, val and test balanced accuracy."""
        return [{"layer": i, "C": r.C, "val_balanced_accuracy": r.val_balanced_accuracy,
                 "test_balanced_accuracy": r.test_balanced_accuracy} for i, r in enumerate(self.results)]


def per_layer_probes(
    features: torch.Tensor | np.ndarray,
    targets: Sequence[int],
    train: Sequence[int],
    val: Sequence[int],
    test: Sequence[int] = (),
    cs: Sequence[float] = DEFAULT_CS,
) -> LayerProbeReport:
    """A linear probe on every hidden state of cached ``(M, L, D)`` features."""
    x = np.asarray(features)
    if x.ndim != 3:
        raise ValueError(f"per_layer_probes needs (M, L, D) features from pooled_features, got shape {x.shape}")
    results = [fit_linear_probe(x[:, layer], targets, train, val, test, cs) for layer in range(x.shape[1])]
    best = max(range(len(results)), key=lambda i: (results[i].val_balanced_accuracy, -i))
    return LayerProbeReport(results, best)


@dataclass
class WeightedSumProbeResult:
    """A SUPERB weighted-sum probe trained on cached features, selected on validation (epoch)."""

    head: WeightedSumHead = field(repr=False)
    best_epoch: int
    val_balanced_accuracy: float
    test_balanced_accuracy: float | None
    layer_weights: list[float]
    trainable_parameters: int


def train_weighted_sum_probe(
    features: torch.Tensor,
    targets: Sequence[int],
    train: Sequence[int],
    val: Sequence[int],
    test: Sequence[int] = (),
    epochs: int = 200,
    lr: float = 1e-2,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> WeightedSumProbeResult:
    """A :class:`WeightedSumHead` on cached ``(M, L, D)`` pooled features, trained by the one training loop.

    The same implementation as the runner's ``weighted_probe`` (:class:`reprogram.runtime.prefix.PooledClassifier`
    trained by :func:`reprogram.experiment.train.train` on the per-layer pooled features): here full-batch AdamW at a
    constant learning rate, class-balanced cross-entropy, no clipping or early stop, the epoch with the best
    validation balanced accuracy kept (ties: the lower validation loss). The features are first standardised
    with train-part statistics per layer and channel.

    Args:
        features: ``(M, L, D)`` from :func:`pooled_features`.
        targets: ``(M,)`` classes ``0..K-1``.
        train, val, test: row indices of the parts (selection on ``val`` only; ``test`` only reported).
        epochs, lr, weight_decay: the optimiser's settings (one step per epoch).
        seed: seed of the head's initialisation and of the loop.
    """
    from reprogram.experiment.config import TrainingConfig
    from reprogram.experiment.train import predict
    from reprogram.experiment.train import train as train_loop
    from reprogram.runtime.cache.features import ArrayDataset
    from reprogram.runtime.prefix import PooledClassifier

    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    y = np.asarray(targets, dtype=np.int64)
    if x.ndim != 3:
        raise ValueError(f"train_weighted_sum_probe needs (M, L, D) features (pooled_features), got {tuple(x.shape)}")
    _check_parts(y, train, val)
    tr, va, te = (list(p) for p in (train, val, test))
    mean, std = x[tr].mean(0, keepdim=True), x[tr].std(0, keepdim=True).clamp_min(1e-6)
    x = ((x - mean) / std).numpy()  # (M, L, D)
    k = int(y.max()) + 1
    torch.manual_seed(seed)
    head = WeightedSumHead(x.shape[1], x.shape[2], k)
    config = TrainingConfig(epochs=epochs, batch_size=len(tr), lr=lr, weight_decay=weight_decay, warmup_fraction=0.0,
                            min_lr_ratio=1.0, grad_clip=None, patience=None, balanced_loss=True)
    model = PooledClassifier(head)
    outcome = train_loop(model, ArrayDataset(x[tr], y[tr]), ArrayDataset(x[va], y[va]), [str(c) for c in range(k)],
                         config, seed=seed, progress=False)
    test_score = None
    if te:
        loader = DataLoader(ArrayDataset(x[te], y[te]), batch_size=len(te))
        y_te, scores = predict(model, loader)
        test_score = float(balanced_accuracy_score(y_te, scores.argmax(1)))
    return WeightedSumProbeResult(head, outcome.best_epoch, float(outcome.best_val["balanced_accuracy"]), test_score,
                                  head.layer_weights.tolist(), head.trainable_parameters())


def probe_builder(head: str):
    """Builder of a frozen speech backbone with a trained head ``head`` (``weighted_sum``, ``attentive``,
    ``linear``), trained by the one training loop on the cached frozen features (:mod:`reprogram.runtime.prefix`)."""
    from reprogram.methods.base import Built, backbone_of, component_counts, native_rate, speech_head

    def build_probe(config, classes: list) -> Built:
        from reprogram.mappers.heads import SpeechClassifier

        if config.method.budget is not None:
            raise ValueError(f"probes have no budget knob; set method.budget=null (got {config.method.budget})")
        backbone = backbone_of(config)
        options = dict(config.method.options)
        model = SpeechClassifier(backbone, speech_head(config, backbone, len(classes), head, options))
        return Built(model, native_rate(config, backbone), backbone.spec.modality, component_counts(model))

    return build_probe
