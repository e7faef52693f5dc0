"""Window scores to events: smoothing, threshold, merging of adjacent windows, minimum duration.

For one class, the windows' probabilities (in start order) are smoothed by a centred moving average over
``smooth`` windows (fewer at the ends), windows at or above ``threshold`` are active, and each run of
consecutive active windows is one event from the first window's start to the last window's end (clamped to the
recording). Events separated by at most ``merge_gap_s`` are merged; events shorter than ``min_duration_s`` are
dropped. An event's score is the largest smoothed probability inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EventRule:
    """How window scores become events (see module doc).

    Attributes:
        threshold: smoothed probability at which a window is active.
        smooth: moving-average length in windows (1: none).
        merge_gap_s: merge events at most this far apart.
        min_duration_s: drop shorter events.
    """

    threshold: float = 0.5
    smooth: int = 1
    merge_gap_s: float = 0.0
    min_duration_s: float = 0.0

    def __post_init__(self) -> None:
        if self.smooth < 1:
            raise ValueError(f"smooth={self.smooth}: give a moving-average length of at least 1 window")
        if self.merge_gap_s < 0 or self.min_duration_s < 0:
            raise ValueError("merge_gap_s and min_duration_s must be >= 0")


def smooth_scores(scores: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average ``(W,)`` of ``scores (W,)`` over ``width`` windows (the mean of those that exist)."""
    if width <= 1 or len(scores) == 0:
        return np.asarray(scores, dtype=np.float64)
    kernel = np.ones(width)
    total = np.convolve(scores, kernel, mode="same")
    count = np.convolve(np.ones(len(scores)), kernel, mode="same")
    return total / count


def class_events(
    starts: np.ndarray, scores: np.ndarray, window_s: float, rule: EventRule, duration_s: float | None = None,
) -> list[tuple[float, float, float]]:
    """Events ``(start_s, end_s, score)`` of one class.

    Args:
        starts: window starts ``(W,)`` in seconds, increasing.
        scores: that class's probability per window ``(W,)``.
        window_s: window length in seconds.
        rule: the event rule.
        duration_s: the recording's length (event ends are clamped to it); ``None``: no clamp.
    """
    s = smooth_scores(np.asarray(scores, dtype=np.float64), rule.smooth)
    active = s >= rule.threshold
    events: list[list[float]] = []
    i = 0
    while i < len(active):
        if not active[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(active) and active[j + 1]:
            j += 1
        end = starts[j] + window_s if duration_s is None else min(starts[j] + window_s, duration_s)
        start, score = float(starts[i]), float(s[i:j + 1].max())
        if events and start - events[-1][1] <= rule.merge_gap_s:
            events[-1][1], events[-1][2] = max(events[-1][1], float(end)), max(events[-1][2], score)
        else:
            events.append([start, float(end), score])
        i = j + 1
    return [(a, b, c) for a, b, c in events if b - a >= rule.min_duration_s - 1e-9]


def all_events(starts: np.ndarray, scores: np.ndarray, classes: list[str], targets: list[str], window_s: float,
               rule: EventRule, duration_s: float | None = None) -> list[tuple[str, float, float, float]]:
    """``(label, start_s, end_s, score)`` of every target class, sorted by start; ``scores`` is ``(W, K)``."""
    out = []
    for label in targets:
        k = classes.index(label)
        out += [(label, a, b, c) for a, b, c in class_events(starts, scores[:, k], window_s, rule, duration_s)]
    return sorted(out, key=lambda e: (e[1], e[0]))


def target_classes(classes: list[str], background: list[str] | tuple[str, ...]) -> list[str]:
    """The classes detected: every class not named as background.

    Raises:
        ValueError: nothing would be detected.
    """
    targets = [c for c in classes if c not in set(background)]
    if not targets:
        raise ValueError(f"every class of the run {classes} is a background label {list(background)}; "
                         "name fewer with --background")
    return targets
