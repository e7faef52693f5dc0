"""Audio I/O: formats, segment reads, mono mix-down, resampling, and named errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from reprogram.data.audio import AudioReadError, audio_info, load_audio, resample


def tone(freq: float, seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """A sine of ``freq`` Hz, shape ``(N,)`` or ``(N, C)`` with channel ``c`` scaled by ``1 / (c + 1)``."""
    t = np.arange(int(seconds * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x if channels == 1 else np.stack([x / (c + 1) for c in range(channels)], axis=1)


def peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave))
    return float(np.fft.rfftfreq(wave.size, 1 / sr)[spectrum.argmax()])


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_segment_read_equals_slice_of_full_read(tmp_path, ext):
    path = tmp_path / f"tone.{ext}"
    sf.write(path, tone(440, 3.0, 16000), 16000)
    full, sr = load_audio(path)
    seg, sr2 = load_audio(path, start_s=1.25, end_s=2.5)
    assert sr == sr2 == 16000
    assert full.dtype == np.float32 and full.shape == (48000,)
    np.testing.assert_array_equal(seg, full[20000:40000])
    tail, _ = load_audio(path, start_s=2.0)
    np.testing.assert_array_equal(tail, full[32000:])


def test_ogg_reads_and_info(tmp_path):
    path = tmp_path / "tone.ogg"
    sf.write(path, tone(1000, 1.0, 22050), 22050)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (22050, 1)
    assert info.duration == pytest.approx(1.0, abs=0.01)
    wave, sr = load_audio(path)
    assert sr == 22050 and abs(peak_hz(wave, sr) - 1000) < 5


def test_stereo_is_mixed_down_to_mono(tmp_path):
    path = tmp_path / "stereo.wav"
    data = tone(300, 1.0, 8000, channels=2)  # right = left / 2
    sf.write(path, data, 8000, subtype="FLOAT")
    wave, _ = load_audio(path)
    assert wave.shape == (8000,)
    np.testing.assert_allclose(wave, data.mean(axis=1), atol=1e-7)
    assert audio_info(path).channels == 2


def test_resampling_gives_the_requested_rate_and_keeps_the_pitch(tmp_path):
    path = tmp_path / "tone.flac"
    sf.write(path, tone(440, 2.0, 44100), 44100)
    wave, sr = load_audio(path, sample_rate=16000)
    assert sr == 16000 and wave.shape == (32000,) and wave.dtype == np.float32
    assert abs(peak_hz(wave, sr) - 440) < 1.0
    seg, _ = load_audio(path, sample_rate=16000, start_s=0.5, end_s=1.5)
    assert seg.shape == (16000,)
    assert resample(wave, 16000, 16000) is wave


def test_corrupt_file_raises_named_error(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 4)
    with pytest.raises(AudioReadError, match="corrupt.wav") as err:
        load_audio(bad)
    assert "Fix:" in str(err.value)
    with pytest.raises(AudioReadError, match="corrupt.wav"):
        audio_info(bad)
    assert issubclass(AudioReadError, ValueError)


def test_truncated_flac_raises_named_error(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(good, np.random.default_rng(0).uniform(-0.5, 0.5, 32000).astype(np.float32), 16000)
    cut = tmp_path / "cut.flac"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match="cut.flac"):
        load_audio(cut)


def test_missing_file_and_bad_segment(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440, 1.0, 8000), 8000)
    with pytest.raises(ValueError, match="outside"):
        load_audio(path, start_s=2.0, end_s=3.0)
    with pytest.raises(ValueError, match="empty"):
        load_audio(path, start_s=0.5, end_s=0.5)
    past_end, _ = load_audio(path, start_s=0.5, end_s=5.0)  # only the existing part
    assert past_end.shape == (4000,)


def test_scan_audio_streams_blocks_and_counts_nan(tmp_path):
    from reprogram.data.audio import scan_audio

    x = tone(440, 3.0, 8000)
    x[100:105] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    scan = scan_audio(path, block_s=0.25)  # 12 blocks
    assert (scan.frames, scan.nonfinite) == (24000, 5) and scan.peak == pytest.approx(0.5, abs=1e-3)
    seg = scan_audio(path, start_s=1.0, end_s=9.0, block_s=0.5)  # end clamped to the file
    assert (seg.frames, seg.nonfinite) == (16000, 0)
