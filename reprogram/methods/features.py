"""Feature methods (probes on cached features, MFCC): nothing upstream trains, so each clip is featurized once;
a run fits on train (selecting on val) and scores every part. Also the clip ids that pair predictions across
systems."""

from __future__ import annotations

import os
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

    def featurize_waves(self, waves: np.ndarray, sample_rate: int) -> np.ndarray:
        """Features of raw windows ``(B, N)`` at ``sample_rate`` (detection over long recordings), the same
        features :meth:`featurize` gives a center-crop dataset of clips of that length."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot featurize raw windows, so its runs cannot be used for detection; "
            "implement featurize_waves(waves, sample_rate)"
        )

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """The fitted classifier as arrays and JSON metadata (no pickle), for :meth:`load_state`.

        The default handles scikit-learn ``StandardScaler + LogisticRegression`` pipelines and a bare
        ``LogisticRegression`` (:func:`reprogram.methods.classifier_io.classifier_state`); subclasses with other
        fitted state extend the metadata (e.g. the selected layer).

        Raises:
            reprogram.methods.classifier_io.UnsavableClassifier: the classifier has no pickle-free form.
        """
        from reprogram.methods.classifier_io import UnsavableClassifier, classifier_state

        if getattr(self, "model", None) is None:
            raise UnsavableClassifier(f"{type(self).__name__} has no scikit-learn model and implements no state(); "
                                      "implement state()/load_state() to use its runs for detection")
        return classifier_state(self.model)

    def load_state(self, arrays: dict[str, np.ndarray], meta: dict) -> FeatureMethod:
        """Restore the fitted classifier :meth:`state` returned (the method is built from the run's config)."""
        from reprogram.methods.classifier_io import classifier_from_state

        self.model = classifier_from_state(arrays, meta)
        self.classes_ = np.asarray(arrays["classes"])
        return self

    def num_parameters(self) -> int:
        """Fitted parameters: coefficients + intercepts of a linear model, or tree nodes of a forest."""
        final = self.model.steps[-1][1] if hasattr(self.model, "steps") else self.model
        if hasattr(final, "coef_"):
            return int(final.coef_.size + np.size(getattr(final, "intercept_", 0)))
        return int(sum(t.tree_.node_count for t in getattr(final, "estimators_", [])))


def clip_ids(table) -> list[str]:
    """One id per clip (file and segment), so clip-level statistics pair systems by clip, not by position."""
    return [f"{r.path}#{r.start_s}-{r.end_s}" for r in table]


def clip_groups(table) -> dict[str, list[str]]:
    """Group column -> one value per clip (the recorder of every scored clip, for per-recorder scores)."""
    return {column: table.group_values(column) for column in table.group_columns}


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
    all_groups = clip_groups(full.table)
    groups = {name: {c: [v[i] for i in idx] for c, v in all_groups.items()} for name, idx in rows.items()}
    groups.update({name: clip_groups(ds.table) for name, ds in external.items()})
    method.fit(*data["train"], *data["val"])
    metrics, predictions = {}, {}
    for name, (x, y) in data.items():
        proba = np.zeros((len(y), len(classes)))
        proba[:, method.classes_] = method.predict_proba(x)
        scores = np.log(proba + 1e-12)
        metrics[name] = classification_metrics(y, scores, classes, positive)
        predictions[name] = {"target": y.tolist(), "scores": np.round(scores, 6).tolist(), "ids": ids[name],
                            "groups": groups[name]}
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


class FeatureFitting:
    """The kind of every :class:`FeatureMethod`: featurize the whole table once, fit on train (select on val),
    score every part (:func:`fit_features`). Nothing trains in parallel, so rank 0 fits alone under torchrun."""

    parallel = False

    def fit(self, built, context) -> dict:
        from reprogram.methods.classifier_io import save_classifier

        ext = {"external": context.eval_sets["external"]} if "external" in context.eval_sets else {}
        fitted = fit_features(built, context.full, context.rows, ext, context.classes, context.positive,
                              context.cache_dir)
        if context.is_main:  # the fitted classifier, so the run can be used as a detector (reprogram detect)
            save_classifier(built.features, context.folder)
        return fitted


#: how feature methods (probes on cached features, MFCC, ...) learn
FITTED = FeatureFitting()
