"""Feature methods in a run (probes on cached features, MFCC): featurize the table once, fit on train (selecting
on val), score every part; and the clip ids that pair predictions across systems."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reprogram.metrics import classification_metrics


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
