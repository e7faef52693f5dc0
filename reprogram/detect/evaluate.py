"""Event-level evaluation of detections against annotated selection tables.

Matching rule (per recording and class): a predicted event matches an annotation of the same class when their
overlap covers at least ``min_cover`` (default 0.5) of the annotation's duration. Predictions are taken in
descending score; each takes the still unmatched annotation it overlaps most, so one prediction matches at most
one annotation and one annotation at most one prediction. Matched predictions are true positives, the others
false positives; unmatched annotations are false negatives. A prediction that spans two calls therefore finds
one and misses the other.

Precision, recall and F1 are given per class and overall (counts summed over the target classes), per
recording and pooled over recordings (counts summed). The precision-recall curve re-runs event extraction at
every threshold of a grid (events change with the threshold: they merge and split), and average precision is
the all-points interpolated area: the curve's points sorted by recall, precision at recall r replaced by the
largest precision at any recall >= r, integrated over recall from 0 (VOC / COCO style). Recall never reaches 1
when some annotation is never detected, and AP counts only what the grid reaches.
"""

from __future__ import annotations

import numpy as np

from reprogram.detect.events import EventRule, class_events

#: default threshold grid of the precision-recall curve
THRESHOLDS = tuple(np.round(np.arange(0.02, 1.0, 0.02), 2))


def match_events(pred: list[tuple[float, float, float]], truth: list[tuple[float, float]],
                 min_cover: float = 0.5) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of predictions ``(start, end, score)`` against annotations ``(start, end)`` of one class
    and recording, under the module's matching rule."""
    if not 0 < min_cover <= 1:
        raise ValueError(f"min_cover={min_cover}: give a fraction in (0, 1]")
    used = [False] * len(truth)
    tp = 0
    for a, b, _ in sorted(pred, key=lambda p: -p[2]):
        best, best_overlap = -1, 0.0
        for j, (s, e) in enumerate(truth):
            overlap = min(b, e) - max(a, s)
            if not used[j] and overlap >= min_cover * (e - s) - 1e-9 and overlap > best_overlap:
                best, best_overlap = j, overlap
        if best >= 0:
            used[best] = True
            tp += 1
    return tp, len(pred) - tp, len(truth) - tp


def prf(tp: int, fp: int, fn: int) -> dict:
    """Counts with precision (1 when nothing is predicted), recall (1 when nothing is annotated) and F1."""
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f1": f1}


def average_precision(precision: list[float], recall: list[float]) -> float:
    """All-points interpolated AP of a curve's points (see module doc)."""
    order = np.argsort(recall)
    r = np.concatenate([[0.0], np.asarray(recall, dtype=float)[order]])
    p = np.concatenate([[0.0], np.asarray(precision, dtype=float)[order]])
    envelope = np.maximum.accumulate(p[::-1])[::-1]  # best precision at recall >= r
    return float(np.sum(np.diff(r) * envelope[1:]))


def _counts(scored: dict, truth: dict, targets: list[str], rule: EventRule, min_cover: float) -> dict:
    """recording -> class -> (tp, fp, fn) at ``rule``."""
    out = {}
    for rec, item in scored.items():
        out[rec] = {}
        for label in targets:
            k = item["classes"].index(label)
            pred = class_events(item["starts"], item["scores"][:, k], item["window_s"], rule, item["duration_s"])
            annotated = [(a, b) for lab, a, b in truth.get(rec, []) if lab == label]
            out[rec][label] = match_events(pred, annotated, min_cover)
    return out


def _summarise(counts: dict, targets: list[str]) -> dict:
    per_rec = {}
    for rec, by_class in counts.items():
        per_rec[rec] = {"classes": {c: prf(*by_class[c]) for c in targets},
                        "overall": prf(*np.sum([by_class[c] for c in targets], axis=0).tolist())}
    pooled_class = {c: prf(*np.sum([counts[r][c] for r in counts], axis=0).tolist()) for c in targets}
    pooled = prf(*np.sum([[v["tp"], v["fp"], v["fn"]] for v in pooled_class.values()], axis=0).tolist())
    return {"recordings": per_rec, "pooled": {"classes": pooled_class, "overall": pooled}}


def evaluate(scored: dict, truth: dict, targets: list[str], rule: EventRule, min_cover: float = 0.5,
             thresholds: tuple[float, ...] = THRESHOLDS) -> dict:
    """Event-level metrics at ``rule.threshold`` and the PR curve over ``thresholds``.

    Args:
        scored: recording -> ``{"starts" (W,), "scores" (W, K), "classes", "window_s", "duration_s"}``.
        truth: recording -> ``[(label, start_s, end_s), ...]`` (:func:`reprogram.detect.tables.read_truth`);
            a scored recording without a table has no annotations (every event is a false positive).
        targets: the classes evaluated.
        rule: the event rule (its threshold is the operating point).
        min_cover: matching overlap (fraction of the annotation).
        thresholds: the PR curve's grid.

    Returns:
        ``{"at_threshold": {"recordings", "pooled"}, "curve": {"thresholds", "pooled": {class | "overall":
        {"precision", "recall"}}, "recordings": ...}, "ap": {"pooled": {class | "overall": AP, "mean": mAP},
        "recordings": {rec: {...}}}, "rule", "min_cover", "unscored_tables"}``.
    """
    missing = sorted(set(truth) - set(scored))
    at = _summarise(_counts(scored, truth, targets, rule, min_cover), targets)
    curves = [_summarise(_counts(scored, truth, targets, _with(rule, t), min_cover), targets) for t in thresholds]

    def curve(get) -> dict:
        keys = [*targets, "overall"]
        return {k: {"precision": [get(c, k)["precision"] for c in curves],
                    "recall": [get(c, k)["recall"] for c in curves]} for k in keys}

    def pick(summary: dict, key: str) -> dict:
        return summary["overall"] if key == "overall" else summary["classes"][key]

    pooled_curve = curve(lambda c, k: pick(c["pooled"], k))
    rec_curves = {r: curve(lambda c, k, r=r: pick(c["recordings"][r], k)) for r in scored}

    def aps(cv: dict) -> dict:
        out = {k: average_precision(v["precision"], v["recall"]) for k, v in cv.items()}
        out["mean"] = float(np.mean([out[c] for c in targets]))
        return out

    return {
        "at_threshold": at,
        "curve": {"thresholds": list(map(float, thresholds)), "pooled": pooled_curve, "recordings": rec_curves},
        "ap": {"pooled": aps(pooled_curve), "recordings": {r: aps(cv) for r, cv in rec_curves.items()}},
        "rule": {"threshold": rule.threshold, "smooth": rule.smooth, "merge_gap_s": rule.merge_gap_s,
                 "min_duration_s": rule.min_duration_s},
        "min_cover": min_cover,
        "targets": list(targets),
        "unscored_tables": missing,
    }


def _with(rule: EventRule, threshold: float) -> EventRule:
    return EventRule(float(threshold), rule.smooth, rule.merge_gap_s, rule.min_duration_s)
