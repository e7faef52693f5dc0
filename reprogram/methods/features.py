"""Feature methods (probes on cached features, MFCC): nothing upstream trains, so each clip is featurized once;
a run fits on train (selecting on val) and scores every part. Also the clip ids that pair predictions across
systems."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reprogram.experiment.metrics import classification_metrics


class FeatureMethod:
    """A method that computes each clip's features once and fits a classifier on them (nothing upstream trains).

    Subclasses implement :meth:`featurize` and :meth:`fit`; after ``fit``, :attr:`classes_` holds the target
    indices seen in training and :meth:`predict_proba` gives ``(M, len(classes_))`` probabilities.
    """

    classes_: np.ndarray
    selection: dict

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:  # pragma: no cover
        """``(M, D)`` features of a dataset of ``(wave, target, ...)`` items.

        Args:
            dataset: a ``WaveformDataset`` with a deterministic crop.
            cache_dir: a cache folder to read the features from (computing them once into it when absent),
                keyed by the dataset's identity and everything else they depend on; ``None``: no disk cache.
        """
        raise NotImplementedError

    def fit(self, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> FeatureMethod:
        """Fit on train; any hyper-parameter is chosen on val only."""
        raise NotImplementedError  # pragma: no cover - abstract

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x)

    def num_parameters(self) -> int:
        """Fitted parameters: coefficients + intercepts of a linear model, or tree nodes of a forest."""
        final = self.model.steps[-1][1] if hasattr(self.model, "steps") else self.model
        if hasattr(final, "coef_"):
            return int(final.coef_.size + np.size(getattr(final, "intercept_", 0)))
        return int(sum(t.tree_.node_count for t in getattr(final, "estimators_", [])))


class MfccFeatures(FeatureMethod):
    """MFCC (+ deltas) clip statistics (:mod:`reprogram.methods.mfcc`) with a class-balanced classifier."""

    def __init__(self, classifier: str, seed: int, **feature_options) -> None:
        from reprogram.methods.mfcc import make_classifier

        self.model = make_classifier(classifier, seed=seed)
        self.feature_options = feature_options
        self.selection = {}

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
        from reprogram.methods.mfcc import mfcc_features

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

    def fit(self, x_train, y_train, x_val, y_val) -> MfccFeatures:
        self.model.fit(x_train, y_train)
        self.classes_ = self.model.classes_
        return self


class ProbeFeatures(FeatureMethod):
    """Linear probe: logistic regression on one cached hidden state of a frozen speech encoder
    (:mod:`reprogram.methods.probes`), its regularisation chosen on the validation split."""

    def __init__(self, backbone, layer: int, seed: int, cs: Sequence[float] | None = None) -> None:
        self.backbone, self.layer, self.seed, self.cs = backbone, layer, seed, cs
        self.selection = {}

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
        from reprogram.methods.probes import pooled_features

        # every hidden state is cached, so a probe of another layer reuses the entry
        return pooled_features(self.backbone, dataset, cache_dir=cache_dir)[:, self.layer].numpy()  # (M, D)

    def fit(self, x_train, y_train, x_val, y_val) -> ProbeFeatures:
        from reprogram.methods.probes import DEFAULT_CS, fit_linear_probe

        x = np.concatenate([x_train, x_val])
        y = np.concatenate([y_train, y_val])
        n = len(x_train)
        result = fit_linear_probe(x, y, range(n), range(n, len(x)), cs=self.cs or DEFAULT_CS, seed=self.seed)
        self.model = result.model
        self.classes_ = self.model.classes_
        self.selection = {"C": result.C, "val_balanced_accuracy_by_C": {str(k): v for k, v in result.val_by_C.items()}}
        return self


class PerLayerProbeFeatures(ProbeFeatures):
    """One linear probe per hidden state (:func:`reprogram.methods.probes.per_layer_probes`, each with its ``C`` chosen
    on
    validation); the layer with the best validation balanced accuracy is kept. ``selection`` records every
    layer's validation score (and ``C``) so a result shows where the information is."""

    def __init__(self, backbone, seed: int, cs: Sequence[float] | None = None) -> None:
        super().__init__(backbone, -1, seed, cs)

    def featurize(self, dataset, cache_dir: str | os.PathLike[str] | None = None) -> np.ndarray:
        from reprogram.methods.probes import pooled_features

        return pooled_features(self.backbone, dataset, cache_dir=cache_dir).numpy()  # (M, L, D)

    def fit(self, x_train, y_train, x_val, y_val) -> PerLayerProbeFeatures:
        from reprogram.methods.probes import DEFAULT_CS, per_layer_probes

        x, y, n = np.concatenate([x_train, x_val]), np.concatenate([y_train, y_val]), len(x_train)
        report = per_layer_probes(x, y, range(n), range(n, len(x)), cs=self.cs or DEFAULT_CS)
        self.layer = report.best_layer
        self.model = report.results[self.layer].model
        self.classes_ = self.model.classes_
        self.feature_dim = int(x.shape[2])
        self.selection = {
            "layer": self.layer,
            "C": report.results[self.layer].C,
            "val_balanced_accuracy_by_layer": [r.val_balanced_accuracy for r in report.results],
            "C_by_layer": [r.C for r in report.results],
        }
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(x[:, self.layer])


def clip_ids(table) -> list[str]:
    """One id per clip (file and segment), so clip-level statistics pair systems by clip, not by position."""
    return [f"{r.path}#{r.start_s}-{r.end_s}" for r in table]


def fit_features(
    built, full, rows: dict[str, list[int]], external: dict, classes: list[str], positive: int | None,
    cache_dir: Path | None,
) -> dict:
    """Featurize the whole table once (cached: once across runs, seeds and folds), take each part's rows, fit on
    train (selecting on val), score every part; scores are log-probabilities.

    Args:
        built: the built feature method.
        full: center-crop dataset of the whole table (``(M, N)`` clips).
        rows: part name -> row indices of the table.
        external: ``{"external": dataset}`` for an external test set, else empty.
        cache_dir: the feature cache folder, or ``None``.
    """
    method = built.features
    x_all, y_all = method.featurize(full, cache_dir), np.asarray(full.targets)  # (M, D), (M,)
    data = {name: (x_all[idx], y_all[idx]) for name, idx in rows.items()}
    data.update({name: (method.featurize(ds, cache_dir), np.asarray(ds.targets)) for name, ds in external.items()})
    all_ids = clip_ids(full.table)
    ids = {name: [all_ids[i] for i in idx] for name, idx in rows.items()}
    ids.update({name: clip_ids(ds.table) for name, ds in external.items()})
    method.fit(*data["train"], *data["val"])
    metrics, predictions = {}, {}
    for name, (x, y) in data.items():
        proba = np.zeros((len(y), len(classes)))
        proba[:, method.classes_] = method.predict_proba(x)
        scores = np.log(proba + 1e-12)
        metrics[name] = classification_metrics(y, scores, classes, positive)
        predictions[name] = {"target": y.tolist(), "scores": np.round(scores, 6).tolist(), "ids": ids[name]}
    n = method.num_parameters()
    return {
        "params": {
            "trainable": n,
            "total": n,
            "components": {"classifier": n, "features": getattr(method, "feature_dim", int(data["train"][0].shape[1]))},
        },
        "metrics": metrics,
        "training": {"selection": method.selection},
        "label_mapping": None,
        "predictions": predictions,
    }
