"""Classification and detection metrics (scikit-learn), as JSON-friendly dicts.

One definition everywhere (runner, MFCC benchmark, clip-level bootstrap of :mod:`reprogram.experiment.stats`): balanced
accuracy is the mean recall over the classes present in the targets (scikit-learn's ``balanced_accuracy_score``),
and macro-F1 is the unweighted mean F1 over the SAME classes (``zero_division=0``: a present class never
predicted has F1 0). When every class of the task is present (stratified splits) this equals macro-F1 over all K
classes; when a test part lacks a class, averaging over all K would cap a perfect classifier below 1, and
averaging over present-or-predicted classes would count a spurious prediction twice (lost recall of the true
class, plus a zero term), so neither is used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import metrics as skm

#: scalar metrics every classification result carries
CLASSIFICATION_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
#: extra scalar metrics of detection (binary presence) tasks
DETECTION_METRICS = ("roc_auc", "average_precision")


def classification_metrics(
    y_true: Sequence[int],
    scores: np.ndarray,
    classes: Sequence[str],
    positive: int | None = None,
) -> dict:
    """Metrics of one evaluated split.

    Args:
        y_true: ``(M,)`` integer targets in ``0..K-1``.
        scores: ``(M, K)`` class scores (logits or probabilities); the prediction is their argmax.
        classes: the K class names, in target order.
        positive: for detection tasks, the target index of the positive class: adds ROC-AUC and
            average precision computed from the softmax probability of that class.

    Returns:
        ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in ``y_true``),
        ``macro_f1`` (over the same classes, ``zero_division=0``; see the module docstring), ``per_class_recall``
        (class -> recall, ``None`` for classes absent from ``y_true``), ``confusion_matrix`` (K x K,
        rows true, columns predicted, in ``classes`` order), ``n``, and for detection ``roc_auc`` and
        ``average_precision`` (``None`` when the split holds a single class).
    """
    y_true = np.asarray(y_true, dtype=int)
    scores = np.asarray(scores, dtype=float)
    k = len(classes)
    if scores.ndim != 2 or scores.shape != (len(y_true), k):
        raise ValueError(f"scores must be (M, K) = ({len(y_true)}, {k}), got {scores.shape}")
    if len(y_true) == 0:
        raise ValueError("cannot compute metrics on an empty split; check the split sizes")
    y_pred = scores.argmax(axis=1)
    labels = list(range(k))
    cm = skm.confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.zeros(k), where=support > 0)
    present = support > 0
    out = {
        "n": int(len(y_true)),
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(recall[present].mean()),
        "macro_f1": float(
            skm.f1_score(y_true, y_pred, labels=np.flatnonzero(present), average="macro", zero_division=0)
        ),
        "per_class_recall": {c: (float(recall[i]) if present[i] else None) for i, c in enumerate(classes)},
        "confusion_matrix": cm.tolist(),
    }
    if positive is not None:
        out.update(detection_metrics(y_true == positive, softmax(scores)[:, positive]))
    return out


def detection_metrics(is_positive: Sequence[bool], score: Sequence[float]) -> dict:
    """ROC-AUC and average precision of a positive-class score (``None`` if only one class is present)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    if is_positive.all() or not is_positive.any():
        return {"roc_auc": None, "average_precision": None}
    return {
        "roc_auc": float(skm.roc_auc_score(is_positive, score)),
        "average_precision": float(skm.average_precision_score(is_positive, score)),
    }


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of ``(M, K)`` scores (numerically stable)."""
    z = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(y_true: Sequence[int], scores: np.ndarray) -> float:
    """Mean negative log-likelihood of the targets under softmax(scores)."""
    y_true = np.asarray(y_true, dtype=int)
    z = scores - scores.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y_true)), y_true].mean())
