"""Time intervals: fixed windows over long clips, pad/crop to a fixed length, overlaps, background windows."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np

from reprogram.data.audio import audio_info
from reprogram.data.records import ClipRecord, ClipTable

CropPolicy = Literal["center", "random", "start"]
CROP_POLICIES: tuple[str, ...] = ("center", "random", "start")


def window_bounds(
    start_s: float, end_s: float, window_s: float, hop_s: float | None = None, last: str = "pad"
) -> list[tuple[float, float]]:
    """Fixed windows ``[t, t + window_s)`` every ``hop_s`` seconds over ``[start_s, end_s)``.

    Args:
        start_s: start of the span in seconds.
        end_s: end of the span.
        window_s: window length in seconds.
        hop_s: step between window starts (default ``window_s``: no overlap).
        last: what to do with a final partial window: ``"pad"`` keeps it (it is padded when loaded),
            ``"drop"`` discards it, ``"shift"`` moves it back to end at ``end_s`` (full length, overlapping).
            A span shorter than one window always yields one window.

    Returns:
        List of ``(start, end)`` pairs; ``end - start == window_s`` except a padded last window.
    """
    hop_s = window_s if hop_s is None else hop_s
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window ({window_s} s) and hop ({hop_s} s) must be positive")
    if last not in ("pad", "drop", "shift"):
        raise ValueError(f"last={last!r}; use 'pad', 'drop' or 'shift'")
    span = end_s - start_s
    if span <= window_s:
        return [(start_s, end_s)]
    n_full = int(np.floor((span - window_s) / hop_s + 1e-9)) + 1
    out = [(start_s + i * hop_s, start_s + i * hop_s + window_s) for i in range(n_full)]
    tail = out[-1][0] + hop_s
    if out[-1][1] < end_s - 1e-9 and tail < end_s:
        if last == "pad":
            out.append((tail, end_s))
        elif last == "shift":
            out.append((end_s - window_s, end_s))
    return out


def clip_bounds(record: ClipRecord, duration_of: Callable[[str], float] | None = None) -> tuple[float, float]:
    """``(start_s, end_s)`` of a record, reading the file's header when an end is open."""
    start = record.start_s or 0.0
    end = record.end_s
    if end is None:
        end = (duration_of or (lambda p: audio_info(p).duration))(record.path)
    return start, end


def window_table(
    table: ClipTable, window_s: float, hop_s: float | None = None, last: str = "pad"
) -> ClipTable:
    """Split every clip of a table into fixed windows that inherit its label and groups.

    Args:
        table: the clips.
        window_s: window length in seconds.
        hop_s: hop between windows (default ``window_s``).
        last: final partial window policy (see :func:`window_bounds`).

    Returns:
        A table of windows; each record's ``meta["window_of"]`` names the clip's source row.
    """
    cache: dict[str, float] = {}

    def duration_of(path: str) -> float:
        if path not in cache:
            cache[path] = audio_info(path).duration
        return cache[path]

    records = []
    for rec in table:
        start, end = clip_bounds(rec, duration_of)
        for i, (s, e) in enumerate(window_bounds(start, end, window_s, hop_s, last)):
            meta = {**rec.meta, "window_of": rec.source, "window_index": str(i)}
            records.append(replace(rec, start_s=s, end_s=e, source=f"{rec.source}#w{i}", meta=meta))
    return ClipTable(records, table.label_column, table.group_columns, table.name, list(table.skipped),
                     list(table.notes))


def fit_length(wave: np.ndarray, n: int, policy: str = "center", rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop or zero-pad a waveform to exactly ``n`` samples.

    Args:
        wave: waveform, shape ``(N,)``.
        n: wanted length.
        policy: ``"center"`` (evaluation: centred crop, symmetric padding), ``"random"`` (training: random
            crop offset, random placement inside the padding; needs ``rng``), ``"start"`` (keep the start,
            pad at the end).
        rng: random generator for ``"random"``.

    Returns:
        Waveform of shape ``(n,)``.
    """
    if policy not in CROP_POLICIES:
        raise ValueError(f"crop policy {policy!r} unknown; use one of {CROP_POLICIES}")
    if policy == "random" and rng is None:
        raise ValueError("crop='random' needs a numpy Generator (rng=np.random.default_rng(seed))")
    size = wave.shape[0]
    if size == n:
        return wave
    extra = abs(size - n)
    if policy == "start":
        offset = 0
    elif policy == "center":
        offset = extra // 2
    else:
        offset = int(rng.integers(0, extra + 1))
    if size > n:
        return wave[offset : offset + n]
    out = np.zeros(n, dtype=wave.dtype)
    out[offset : offset + size] = wave
    return out


def find_overlaps(records: Sequence[ClipRecord]) -> list[tuple[int, int]]:
    """Pairs of records ``(i, j)``, ``i < j``, whose segments of the same file overlap in time.

    Whole-file records (no start/end) overlap every other record of their file.
    """
    by_file: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        by_file[os.path.normpath(r.path)].append(i)
    pairs = []
    for idx in by_file.values():
        spans = sorted(
            (records[i].start_s or 0.0, np.inf if records[i].end_s is None else records[i].end_s, i) for i in idx
        )
        active: list[tuple[float, int]] = []  # (end, index) of spans that may still overlap
        for s, e, i in spans:
            active = [(ae, j) for ae, j in active if ae > s]
            pairs.extend((min(i, j), max(i, j)) for _, j in active)
            active.append((e, i))
    return sorted(pairs)


def sample_background(
    duration_s: float,
    events: Sequence[tuple[float, float]],
    window_s: float,
    k: int,
    rng: np.random.Generator,
    min_gap_s: float = 1.0,
) -> list[tuple[float, float]]:
    """Up to ``k`` non-overlapping windows of a recording that stay ``min_gap_s`` away from every event.

    Windows are drawn uniformly over the free time (the recording minus every event widened by
    ``min_gap_s`` on both sides), without overlapping each other.

    Args:
        duration_s: recording length in seconds.
        events: annotated ``(start, end)`` spans of any label.
        window_s: background window length.
        k: number of windows wanted.
        rng: random generator (seed it per recording for determinism).
        min_gap_s: minimum distance in seconds between a window and any event.

    Returns:
        Sorted ``(start, end)`` windows; fewer than ``k`` when the free time cannot hold ``k``.
    """
    if window_s <= 0:
        raise ValueError(f"background window length must be positive, got {window_s}")
    blocked = sorted((max(0.0, s - min_gap_s), min(duration_s, e + min_gap_s)) for s, e in events)
    free, cursor = [], 0.0
    for s, e in blocked:
        if s > cursor:
            free.append((cursor, s))
        cursor = max(cursor, e)
    if cursor < duration_s:
        free.append((cursor, duration_s))
    chosen: list[tuple[float, float]] = []
    for _ in range(k):
        room = [(a, b - window_s) for a, b in free if b - a >= window_s]  # feasible start ranges
        total = sum(b - a for a, b in room)
        if not room:
            break
        u = rng.uniform(0.0, total) if total > 0 else 0.0
        start = room[-1][1]  # reached only if rounding leaves u past the last range
        for a, b in room:
            if u <= b - a:
                start = a + u
                break
            u -= b - a
        chosen.append((start, start + window_s))
        # remove the chosen window from the free time
        free = [piece for a, b in free for piece in ((a, min(b, start)), (max(a, start + window_s), b)) if
                piece[1] - piece[0] > 1e-9]
    return sorted(chosen)
