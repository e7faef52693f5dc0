"""The classical peer of every comparison: MFCC (+ deltas) clip statistics with scikit-learn classifiers.

Per clip: 20 MFCCs from a 40-band mel spectrogram (25 ms Hann windows, 10 ms hop), their deltas and
delta-deltas, summarised by the mean and standard deviation of every coefficient over time (D = 120 by
default). Then ``StandardScaler + LogisticRegression`` or a random forest, both class-balanced, evaluated on
caller-given folds (grouped folds for recorder-confounded data, stratified folds for caller ID).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torchaudio
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from reprogram.data.records import ClipTable
from reprogram.experiment.metrics import classification_metrics
from reprogram.methods.features import FeatureMethod

CLASSIFIERS = ("logreg", "random_forest")
METRICS = ("balanced_accuracy", "accuracy", "macro_f1")


def mfcc_features(
    waves: np.ndarray | Sequence[np.ndarray],
    sample_rate: int,
    *,
    n_mfcc: int = 20,
    n_mels: int = 40,
    win_s: float = 0.025,
    hop_s: float = 0.010,
    f_min: float = 50.0,
    f_max: float | None = None,
    deltas: int = 2,
) -> np.ndarray:
    """MFCC (+ delta, + delta-delta) mean and standard deviation over time, one row per clip.

    Args:
        waves: (M, N) array or a sequence of M mono clips (N_i,), any lengths of at least one window.
        sample_rate: sample rate of every clip in Hz.
        n_mfcc: cepstral coefficients kept (including c0).
        n_mels: mel bands.
        win_s: analysis window in seconds (the FFT size is the next power of two).
        hop_s: hop in seconds.
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz (default: Nyquist).
        deltas: 0 (static only), 1 (+ deltas) or 2 (+ deltas + delta-deltas).

    Returns:
        Features of shape (M, 2 * n_mfcc * (1 + deltas)): means of [static, delta, delta2] then their stds.
    """
    if deltas not in (0, 1, 2):
        raise ValueError(f"deltas={deltas!r}: use 0, 1 or 2")
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc={n_mfcc} exceeds n_mels={n_mels}; use n_mfcc <= n_mels")
    win = int(round(win_s * sample_rate))
    hop = max(1, int(round(hop_s * sample_rate)))
    n_fft = 1 << math.ceil(math.log2(max(win, 2)))
    f_max = sample_rate / 2 if f_max is None else f_max
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"mel range f_min={f_min}, f_max={f_max} must satisfy 0 <= f_min < f_max <= {sample_rate / 2}")
    mfcc = torchaudio.transforms.MFCC(
        sample_rate=sample_rate,
        n_mfcc=n_mfcc,
        melkwargs={
            "n_fft": n_fft,
            "win_length": win,
            "hop_length": hop,
            "n_mels": n_mels,
            "f_min": f_min,
            "f_max": f_max,
        },
    )
    clips = [np.asarray(w, dtype=np.float32) for w in waves]
    out = np.empty((len(clips), 2 * n_mfcc * (1 + deltas)), dtype=np.float32)
    by_length: dict[int, list[int]] = {}
    for i, w in enumerate(clips):
        if w.ndim != 1 or len(w) <= n_fft // 2 or not np.isfinite(w).all():
            raise ValueError(
                f"clip {i} has shape {w.shape}: give mono clips of more than {n_fft // 2} finite samples "
                "(mix down, pad or drop it first)"
            )
        by_length.setdefault(len(w), []).append(i)
    with torch.no_grad():
        for idx in by_length.values():  # equal lengths batch together
            # (B, 1, N): torchaudio's top_db floor is taken per leading item of a 4-D spectrogram, so a clip's
            # features never depend on the other clips of the batch (a (B, N) input shares one floor)
            batch = torch.from_numpy(np.stack([clips[i] for i in idx]))[:, None]
            c = mfcc(batch)[:, 0]  # (B, n_mfcc, T)
            feats = [c]
            for _ in range(deltas):
                feats.append(torchaudio.functional.compute_deltas(feats[-1]))
            f = torch.cat(feats, dim=1)  # (B, n_mfcc * (1 + deltas), T)
            out[idx] = torch.cat([f.mean(dim=-1), f.std(dim=-1, correction=0)], dim=1).numpy()
    return out


def table_features(table: ClipTable, sample_rate: int = 16000, **kwargs: Any) -> np.ndarray:
    """:func:`mfcc_features` of every clip of ``table`` read at ``sample_rate``; shape (M, D)."""
    from reprogram.data.audio import load_audio

    waves = [load_audio(r.path, sample_rate=sample_rate, start_s=r.start_s, end_s=r.end_s)[0] for r in table]
    return mfcc_features(waves, sample_rate, **kwargs)


def make_classifier(classifier: str | BaseEstimator = "logreg", seed: int = 0) -> BaseEstimator:
    """A fresh, class-balanced classifier: ``"logreg"`` (scaled logistic regression) or ``"random_forest"``.

    Args:
        classifier: a name from :data:`CLASSIFIERS` or any scikit-learn estimator (cloned).
        seed: random state of the estimator.
    """
    if isinstance(classifier, BaseEstimator):
        return clone(classifier)
    if classifier == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced"))
    if classifier == "random_forest":
        return RandomForestClassifier(n_estimators=300, class_weight="balanced", random_state=seed, n_jobs=1)
    raise ValueError(f"unknown classifier {classifier!r}; use one of {CLASSIFIERS} or a scikit-learn estimator")


def _fold_indices(fold: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(fold, "train") and hasattr(fold, "test"):
        train, test = fold.train, fold.test
    else:
        train, test = fold
    return np.asarray(train, dtype=int), np.asarray(test, dtype=int)


def evaluate_mfcc_baseline(
    table_or_features: ClipTable | np.ndarray,
    targets: Sequence[Any] | None,
    folds: Iterable[Any],
    classifier: str | BaseEstimator = "logreg",
    seed: int = 0,
    *,
    sample_rate: int = 16000,
    feature_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cross-validated MFCC baseline: balanced accuracy, accuracy and macro-F1 per fold and over folds.

    Args:
        table_or_features: a :class:`ClipTable` (clips are read and featurised) or features (M, D).
        targets: the M labels (any hashable values); ``None`` takes the table's labels.
        folds: ``(train_indices, test_indices)`` pairs or objects with ``.train`` and ``.test``.
        classifier: ``"logreg"``, ``"random_forest"`` or a scikit-learn estimator.
        seed: random state of the classifier.
        sample_rate: rate the table's clips are read at.
        feature_kwargs: extra arguments of :func:`mfcc_features`.

    Returns:
        ``{"classifier", "classes", "folds": [per-fold dict], "mean": {metric: value}, "std": {...},
        "chance_balanced_accuracy", "pooled", "predictions"}``. Per-fold dicts hold the metrics of
        :func:`reprogram.experiment.metrics.classification_metrics` (the runner's definitions: balanced accuracy and
        macro-F1 over the classes present in that test fold), sizes, chance (1 / those classes) and
        ``unseen_test_classes`` (test classes absent from training). ``pooled`` scores the out-of-fold
        predictions of all tested clips together (with its own chance level): the summary to prefer when
        folds are unequal, as in leave-one-group-out. ``predictions`` is the out-of-fold prediction of every
        clip (``None`` for clips in no test fold; the last fold wins for clips tested twice).
    """
    if isinstance(table_or_features, ClipTable):
        features = table_features(table_or_features, sample_rate, **(feature_kwargs or {}))
        targets = table_or_features.labels if targets is None else targets
    else:
        features = np.asarray(table_or_features, dtype=np.float64)
    if targets is None:
        raise ValueError("targets=None needs a ClipTable; pass the M labels with precomputed features")
    y = np.asarray(list(targets), dtype=object)
    unlabelled = [i for i, v in enumerate(y) if v is None]
    if unlabelled:
        raise ValueError(f"clips {unlabelled[:5]} have no label; drop unlabelled rows before evaluating")
    if features.ndim != 2 or len(features) != len(y):
        raise ValueError(f"features of shape {features.shape} do not match {len(y)} targets; give (M, D) and M labels")
    name = classifier if isinstance(classifier, str) else type(classifier).__name__
    classes = sorted({str(v) for v in y})
    rows: list[dict[str, Any]] = []
    predictions: list[Any] = [None] * len(y)
    for k, fold in enumerate(folds):
        train, test = _fold_indices(fold)
        if np.intersect1d(train, test).size:
            raise ValueError(f"fold {k}: train and test share clips {np.intersect1d(train, test)[:5].tolist()}...")
        if len(train) == 0 or len(test) == 0:
            raise ValueError(f"fold {k} has an empty train or test set; check the split")
        if len(set(y[train])) < 2:
            raise ValueError(f"fold {k}: training set has a single class {set(y[train])}; use a split with more")
        model = make_classifier(classifier, seed).fit(features[train], y[train].astype(str))
        pred = model.predict(features[test]).astype(str)
        for i, p in zip(test, pred, strict=True):
            predictions[i] = str(p)
        scores = _scores(y[test].astype(str), pred, classes)
        unseen = sorted(set(y[test].astype(str)) - set(y[train].astype(str)))
        rows.append(
            {"fold": k, "n_train": int(len(train)), "n_test": int(len(test)), **scores, "unseen_test_classes": unseen}
        )
    if not rows:
        raise ValueError("no folds given; pass at least one (train, test) pair")
    tested = np.array([i for i, p in enumerate(predictions) if p is not None])
    pooled = _scores(y[tested].astype(str), np.array([predictions[i] for i in tested], dtype=str), classes)
    return {
        "classifier": name,
        "classes": classes,
        "folds": rows,
        "mean": {m: float(np.mean([r[m] for r in rows])) for m in METRICS},
        "std": {m: float(np.std([r[m] for r in rows])) for m in METRICS},
        "chance_balanced_accuracy": float(np.mean([r["chance_balanced_accuracy"] for r in rows])),
        "pooled": pooled,
        "predictions": predictions,
    }


def _scores(truth: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Balanced accuracy, accuracy and macro-F1 by :func:`reprogram.experiment.metrics.classification_metrics` (the
    runner's
    one definition: both over the classes present in ``truth``), and that chance level."""
    index = {c: k for k, c in enumerate(classes)}
    targets = np.array([index[t] for t in truth], dtype=int)  # (M,)
    onehot = np.zeros((len(pred), len(classes)))  # (M, K): the prediction is its argmax
    onehot[np.arange(len(pred)), [index[p] for p in pred]] = 1.0
    m = classification_metrics(targets, onehot, classes)
    return {
        "balanced_accuracy": m["balanced_accuracy"],
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "chance_balanced_accuracy": 1.0 / len(np.unique(targets)),
    }


class MfccFeatures(FeatureMethod):
    """MFCC (+ deltas) clip statistics (:func:`mfcc_features`) with a class-balanced classifier."""

    def __init__(self, classifier: str, seed: int, **feature_options) -> None:
        self.model = make_classifier(classifier, seed=seed)
        self.feature_options = feature_options
        self.selection = {}

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
        def compute() -> np.ndarray:
            waves = np.stack([dataset[i][0].numpy() for i in range(len(dataset))])  # (M, N)
            return mfcc_features(waves, dataset.sample_rate, **self.feature_options)  # (M, D)

        if cache_dir is None:
            return compute()
        from reprogram.runtime.cache.keys import versions
        from reprogram.runtime.cache.store import get_or_build, load_array

        def build(folder) -> dict:
            x = compute()
            np.save(folder / "features.npy", x.astype(np.float32))
            return {"shape": list(x.shape)}

        from reprogram.runtime.cache.code import code_fingerprint, dataset_code

        parts = {"data": dataset.cache_key_parts(), "features": "mfcc_statistics",
                 "code": code_fingerprint(mfcc_features, *dataset_code(dataset)),
                 "options": dict(sorted(self.feature_options.items())),
                 "versions": versions("torch", "torchaudio", "numpy")}
        x, _ = get_or_build(cache_dir, "features", parts, build, lambda folder: load_array(folder, "features"))
        return np.array(x)  # (M, D), in memory

    def featurize_waves(self, waves: np.ndarray, sample_rate: int) -> np.ndarray:
        """:func:`mfcc_features` of windows ``(B, N)``; shape ``(B, D)``."""
        return mfcc_features(waves, sample_rate, **self.feature_options)

    def fit(self, x_train, y_train, x_val, y_val) -> MfccFeatures:
        self.model.fit(x_train, y_train)
        self.classes_ = self.model.classes_
        return self


def build_mfcc(config, classes: list):
    """MFCC (+ deltas) statistics with ``options.classifier`` (``logreg`` | ``random_forest``); no backbone.

    Other options go to :func:`mfcc_features` (``n_mfcc``, ``deltas`` ...).
    """
    from reprogram.methods.base import DEFAULT_SAMPLE_RATE, Built

    opts = dict(config.method.options)
    classifier = opts.pop("classifier", "logreg")
    if config.method.budget is not None:
        raise ValueError("the MFCC baseline has no budget knob; set method.budget=null")
    rate = int(config.data.sample_rate or DEFAULT_SAMPLE_RATE)
    return Built(None, rate, "features", {}, features=MfccFeatures(classifier, config.seed, **opts))
