"""Audio input: soundfile for decoding (WAV/FLAC/OGG/...), torchaudio for resampling.

Every function returns float32 mono waveforms of shape ``(N,)``. Segments of long recordings are read by
seeking to the first frame, so only the requested frames are decoded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import soundfile as sf

#: File name extensions treated as audio by the folder and Raven loaders (lower case, with the dot).
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3", ".w64", ".rf64", ".caf")


class AudioReadError(ValueError):
    """An audio file exists but cannot be decoded (corrupt, truncated, or not audio)."""


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of one audio file (read without decoding samples).

    Attributes:
        path: the file.
        frames: number of sample frames.
        sample_rate: frames per second.
        channels: number of channels.
        format: container format reported by libsndfile (``FLAC``, ``WAV``, ...).
    """

    path: str
    frames: int
    sample_rate: int
    channels: int
    format: str = ""

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"audio file not found: {path}. Fix: correct the path in the table (relative paths are resolved "
        "against the table's folder) or load with on_error='skip' to report and skip the row."
    )


def _unreadable(path: str, err: Exception) -> AudioReadError:
    return AudioReadError(
        f"cannot read audio file {path}: {str(err).rstrip('.')}. Fix: check the file is a complete WAV/FLAC/OGG "
        "recording (re-export or re-copy it), or load with on_error='skip' to report and skip it."
    )


def audio_info(path: str | os.PathLike[str]) -> AudioInfo:
    """Read the header of an audio file.

    Args:
        path: audio file.

    Returns:
        Frames, sample rate, channels and format of the file.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioReadError: the file is not decodable audio.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _missing(path)
    try:
        info = sf.info(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise _unreadable(path, err) from err
    if info.samplerate <= 0 or info.channels <= 0:
        raise _unreadable(path, ValueError(f"header says {info.samplerate} Hz, {info.channels} channels"))
    return AudioInfo(path, int(info.frames), int(info.samplerate), int(info.channels), str(info.format))


def resample(wave: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Resample a mono waveform with torchaudio's windowed-sinc resampler.

    Args:
        wave: float32 waveform, shape ``(N,)``.
        orig_sr: its sample rate in Hz.
        new_sr: the wanted sample rate in Hz.

    Returns:
        float32 waveform of shape ``(round(N * new_sr / orig_sr),)`` (torchaudio's length rule).
    """
    if orig_sr == new_sr or wave.size == 0:
        return wave.astype(np.float32, copy=False)
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    import torch  # imported here so header-only tools (data check) start without loading torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), int(orig_sr), int(new_sr))
    return out.numpy().astype(np.float32, copy=False)


def load_audio(
    path: str | os.PathLike[str],
    sample_rate: int | None = None,
    start_s: float | None = None,
    end_s: float | None = None,
) -> tuple[np.ndarray, int]:
    """Read a file, or a segment of it, as a float32 mono waveform.

    Only the frames of ``[start_s, end_s)`` are decoded (the reader seeks to ``start_s``). A segment that
    runs past the end of the file returns the frames that exist (``data check`` reports such rows).
    Channels are averaged to mono.

    Args:
        path: audio file (anything libsndfile reads: WAV, FLAC, OGG/Vorbis, AIFF, MP3, ...).
        sample_rate: resample to this rate in Hz; ``None`` keeps the file's rate.
        start_s: segment start in seconds (``None``: start of file).
        end_s: segment end in seconds (``None``: end of file).

    Returns:
        ``(wave, sr)``: waveform of shape ``(N,)`` and its sample rate.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioReadError: the file cannot be decoded.
        ValueError: the segment is empty or starts outside the file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _missing(path)
    try:
        with sf.SoundFile(path) as f:
            sr = int(f.samplerate)
            first = 0 if start_s is None else int(round(start_s * sr))
            last = f.frames if end_s is None else min(int(round(end_s * sr)), f.frames)
            if first < 0 or (start_s is not None and first >= f.frames) or (end_s is not None and last <= first):
                raise ValueError(
                    f"segment [{start_s}, {end_s}] s is empty or outside {path} ({f.frames / sr:.3f} s long). "
                    "Fix: correct the start/end columns of this row."
                )
            if first:
                f.seek(first)
            data = f.read(last - first, dtype="float32", always_2d=True)  # (N, C)
            if data.shape[0] < last - first:
                raise AudioReadError(
                    f"{path} is truncated: its header promises {f.frames} frames but decoding stopped after "
                    f"{first + data.shape[0]}. Fix: re-export or re-copy the file, or load with on_error='skip'."
                )
    except sf.LibsndfileError as err:
        raise _unreadable(path, err) from err
    except RuntimeError as err:  # older soundfile raises RuntimeError on decode errors
        raise _unreadable(path, err) from err
    wave = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]  # (N,)
    wave = np.ascontiguousarray(wave, dtype=np.float32)
    if sample_rate is not None and sample_rate != sr:
        return resample(wave, sr, int(sample_rate)), int(sample_rate)
    return wave, sr


@dataclass(frozen=True)
class AudioScan:
    """What a streaming pass over a file (or segment) found.

    Attributes:
        frames: frames decoded.
        nonfinite: samples that are NaN or infinite.
        peak: largest absolute finite sample (0 for silence).
    """

    frames: int
    nonfinite: int
    peak: float


def scan_audio(
    path: str | os.PathLike[str], start_s: float | None = None, end_s: float | None = None, block_s: float = 60.0
) -> AudioScan:
    """Decode a file or segment block by block (bounded memory, for day-long recordings) and summarise it.

    Args:
        path: audio file.
        start_s: segment start in seconds (``None``: start of file).
        end_s: segment end in seconds (``None``: end of file; clamped to the file's end).
        block_s: seconds decoded at a time.

    Returns:
        Frames decoded, count of NaN/inf samples and peak level.

    Raises:
        FileNotFoundError: the file does not exist.
        AudioReadError: the file cannot be decoded, or stops before the frames its header promises.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise _missing(path)
    frames = nonfinite = 0
    peak = 0.0
    try:
        with sf.SoundFile(path) as f:
            first = 0 if start_s is None else min(int(round(start_s * f.samplerate)), f.frames)
            last = f.frames if end_s is None else min(int(round(end_s * f.samplerate)), f.frames)
            if first:
                f.seek(first)
            block = max(1, int(block_s * f.samplerate))
            while frames < last - first:
                data = f.read(min(block, last - first - frames), dtype="float32", always_2d=True)  # (n, C)
                if data.shape[0] == 0:
                    raise AudioReadError(f"{path} is truncated: its header promises {f.frames} frames but decoding "
                                         f"stopped after {first + frames}. Fix: re-export or re-copy the file.")
                finite = np.isfinite(data)
                nonfinite += int(data.size - finite.sum())
                if finite.any():
                    peak = max(peak, float(np.abs(data[finite]).max()))
                frames += data.shape[0]
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _unreadable(path, err) from err
    return AudioScan(frames, nonfinite, peak)
