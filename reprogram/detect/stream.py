"""Sliding windows over long recordings, decoded chunk by chunk (a multi-hour file is never decoded at once).

Windows start every ``hop_s`` seconds at ``0, hop, 2 hop, ...``; each is ``window_s`` long. The last full window
ends at or before the end of the file; when it ends earlier, one more window starting inside the remaining
audio is zero-padded at its end (so the end of the file is scored). A file shorter than one window gives one
padded window. Each chunk of ``chunk_s`` seconds of window starts is read with a seek, plus the window length
and a short margin either side, and resampled as a whole, so resampling edges never reach a window.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import soundfile as sf

from reprogram.data.audio import AudioReadError, audio_info, resample

#: seconds read beyond each chunk's windows on both sides, so resampling filter edges stay outside them
MARGIN_S = 0.1


def window_starts(duration_s: float, window_s: float, hop_s: float) -> np.ndarray:
    """Start times ``(W,)`` in seconds of the windows over a recording of ``duration_s`` (see module doc)."""
    if window_s <= 0 or hop_s <= 0:
        raise ValueError(f"window ({window_s} s) and hop ({hop_s} s) must be positive")
    if duration_s <= window_s:
        return np.zeros(1)
    n = int(np.floor((duration_s - window_s) / hop_s + 1e-9)) + 1
    starts = np.arange(n) * hop_s
    if starts[-1] + window_s < duration_s - 1e-9 and n * hop_s < duration_s:
        starts = np.append(starts, n * hop_s)
    return starts


def stream_windows(
    path: str | os.PathLike[str], sample_rate: int, window_s: float, hop_s: float, batch: int = 32,
    chunk_s: float = 120.0,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of windows of a recording, read chunk by chunk.

    Args:
        path: audio file (any rate, channels averaged to mono).
        sample_rate: rate the windows are resampled to.
        window_s: window length in seconds.
        hop_s: step between window starts in seconds.
        batch: windows per yielded batch.
        chunk_s: seconds of window starts decoded at a time (memory is about ``chunk_s + window_s`` seconds).

    Yields:
        ``(starts (b,), windows (b, N))``: start times in seconds and float32 windows,
        ``N = round(window_s * sample_rate)``.

    Raises:
        FileNotFoundError, AudioReadError: the file is missing or cannot be decoded (named in the message).
    """
    info = audio_info(path)
    path = os.fspath(path)
    n = int(round(window_s * sample_rate))
    starts = window_starts(info.duration, window_s, hop_s)
    chunk_s = max(chunk_s, hop_s)
    try:
        with sf.SoundFile(path) as f:
            sr = f.samplerate
            first = 0
            while first < len(starts):
                last = int(np.searchsorted(starts, starts[first] + chunk_s, side="left"))
                last = max(last, first + 1)
                seg_start = max(0.0, starts[first] - MARGIN_S)
                seg_end = min(info.duration, starts[last - 1] + window_s + MARGIN_S)
                a, b = int(round(seg_start * sr)), min(info.frames, int(round(seg_end * sr)))
                f.seek(a)
                data = f.read(b - a, dtype="float32", always_2d=True)  # (n, C)
                if data.shape[0] < b - a:
                    raise AudioReadError(f"{path} is truncated: its header promises {info.frames} frames but "
                                         f"decoding stopped after {a + data.shape[0]}. Fix: re-export or re-copy it")
                wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                wave = resample(np.ascontiguousarray(wave), sr, sample_rate)
                offset = a / sr  # seconds of wave[0]
                chunk = starts[first:last]
                for i in range(0, len(chunk), batch):
                    part = chunk[i:i + batch]
                    out = np.zeros((len(part), n), dtype=np.float32)
                    for j, t in enumerate(part):
                        s = int(round((t - offset) * sample_rate))
                        piece = wave[s:s + n]
                        out[j, :len(piece)] = piece
                    yield part, out
                first = last
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioReadError(f"cannot read audio file {path}: {err}. Fix: check the file is a complete "
                             "WAV/FLAC/OGG recording (re-export or re-copy it)") from err
