"""Metrics of many bootstrap resamples of one evaluated clip set at once, for the clip-level intervals of
:mod:`reprogram.experiment.stats`.

A resample is a vector of clip counts (multinomial weights); every metric is computed for R resamples from
the ``(R, M)`` weight matrix without copying clips, using the definitions of :mod:`reprogram.experiment.metrics`
(balanced accuracy and macro-F1 over the classes present in the resampled targets; ROC-AUC and average
precision of the softmax probability of the positive class, ties handled as scikit-learn does).
"""

from __future__ import annotations

import numpy as np

from reprogram.experiment.metrics import softmax

#: metrics computable from stored per-clip predictions
CLIP_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc", "average_precision")


def resample_weights(m: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``(R, M)`` clip counts of ``R`` bootstrap resamples of ``M`` clips (each row sums to ``M``)."""
    picks = rng.integers(0, m, size=(n_resamples, m)) + m * np.arange(n_resamples)[:, None]  # (R, M) clip indices
    return np.bincount(picks.ravel(), minlength=n_resamples * m).reshape(n_resamples, m).astype(np.float64)


def _confusion(target: np.ndarray, pred: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """``(R, K, K)`` weighted confusion matrices (rows true, columns predicted)."""
    cells, inverse = np.unique(target * k + pred, return_inverse=True)  # (U,), (M,)
    onehot = np.zeros((len(target), len(cells)))
    onehot[np.arange(len(target)), inverse] = 1.0
    cm = np.zeros((weights.shape[0], k * k))
    cm[:, cells] = weights @ onehot  # (R, U)
    return cm.reshape(-1, k, k)


def _ranking(is_pos: np.ndarray, score: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight per distinct score, highest score first: two ``(R, G)`` arrays."""
    levels, inverse = np.unique(-score, return_inverse=True)  # ascending -score = descending score
    onehot = np.zeros((len(score), len(levels)))
    onehot[np.arange(len(score)), inverse] = 1.0
    pos = (weights * is_pos) @ onehot
    neg = (weights * ~is_pos) @ onehot
    return pos, neg


def clip_metric(
    metric: str, target: np.ndarray, scores: np.ndarray, weights: np.ndarray, positive: int | None = None
) -> np.ndarray:
    """``metric`` of every resample.

    Args:
        metric: one of :data:`CLIP_METRICS`.
        target: ``(M,)`` integer targets.
        scores: ``(M, K)`` class scores; the prediction is their argmax.
        weights: ``(R, M)`` clip counts (``np.ones((1, M))``: the clip set itself).
        positive: positive class index (needed by ``roc_auc`` and ``average_precision``).

    Returns:
        ``(R,)`` values; ``nan`` where a resample leaves the metric undefined (a single class for ROC-AUC).
    """
    target = np.asarray(target, dtype=int)
    scores = np.asarray(scores, dtype=float)
    if metric not in CLIP_METRICS:
        raise ValueError(f"metric {metric!r} cannot be recomputed from predictions; use one of {CLIP_METRICS}")
    if metric in ("roc_auc", "average_precision"):
        if positive is None:
            raise ValueError(f"{metric} needs the positive class; it exists for detection tasks only")
        is_pos = target == positive
        pos, neg = _ranking(is_pos, softmax(scores)[:, positive], weights)  # (R, G)
        n_pos, n_neg = pos.sum(1), neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if metric == "roc_auc":
                neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)  # negatives scored lower than each level
                return ((pos * (neg_below + 0.5 * neg)).sum(1) / (n_pos * n_neg)).astype(float)
            tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
            precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            out = (pos / n_pos[:, None] * precision).sum(1)  # recall steps x precision at each threshold
            return np.where(n_pos > 0, out, np.nan)
    k = scores.shape[1]
    cm = _confusion(target, scores.argmax(axis=1), weights, k)  # (R, K, K)
    diag = np.diagonal(cm, axis1=1, axis2=2)  # (R, K)
    support, predicted = cm.sum(2), cm.sum(1)
    present = support > 0
    if metric == "accuracy":
        return diag.sum(1) / support.sum(1)
    recall = np.divide(diag, support, out=np.zeros_like(diag), where=present)
    if metric == "balanced_accuracy":
        return (recall * present).sum(1) / present.sum(1)
    precision = np.divide(diag, predicted, out=np.zeros_like(diag), where=predicted > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(diag), where=denom > 0)
    return (f1 * present).sum(1) / present.sum(1)
