"""Loaders (manifest, Raven, Hainan, folders), windows and the waveform dataset, on files the tests write."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from reprogram.data import load_table
from reprogram.data.dataset import WaveformDataset, clip_durations, collate, padding_fractions
from reprogram.data.loaders import detect_format
from reprogram.data.manifest import TableError, TableFileNotFoundError
from reprogram.data.windows import find_overlaps, fit_length, sample_background, window_bounds, window_table

SR = 8000


def write_tone(path, seconds: float, freq: float = 440.0, sr: int = SR) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), sr)


def write_text(path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


RAVEN_HEADER = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tCall type"


@pytest.fixture
def raven_dir(tmp_path):
    """Two 30 s recordings with Raven tables (each selection in two views); rec1 has an overlapping pair."""
    write_tone(tmp_path / "audio" / "rec1.wav", 30.0)
    write_tone(tmp_path / "audio" / "rec2.flac", 30.0, 880)
    rows1 = [(1, 2.0, 4.0, "female"), (2, 3.5, 5.0, "male"), (3, 20.0, 22.5, "female")]
    rows2 = [(1, 10.0, 12.0, "duet")]
    for name, rows in (("rec1", rows1), ("rec2", rows2)):
        lines = [RAVEN_HEADER]
        for sel, b, e, lab in rows:
            lines.append(f"{sel}\tWaveform 1\t1\t{b}\t{e}\t0\t4000\t{lab}")
            lines.append(f"{sel}\tSpectrogram 1\t1\t{b}\t{e}\t500\t1500\t{lab}")
        write_text(tmp_path / "tables" / f"{name}.Table.1.selections.txt", lines)
    return tmp_path


def test_manifest_loads_paths_groups_segments_and_sources(tmp_path):
    write_tone(tmp_path / "audio" / "a.wav", 2.0)
    write_tone(tmp_path / "audio" / "b.wav", 3.0)
    write_text(tmp_path / "m.csv", ["file,call,recorder,t0,t1,note",
                                    "audio/a.wav,duet,S1,,,x", "audio/b.wav,solo,S2,0.5,2.0,y"])
    table = load_table(tmp_path / "m.csv", label_column="call", group_columns=["recorder"], path_column="file",
                       start_column="t0", end_column="t1")
    assert len(table) == 2 and table.classes == ["duet", "solo"]
    a, b = table
    assert a.path == str(tmp_path / "audio" / "a.wav") and a.start_s is None and a.groups == {"recorder": "S1"}
    assert (b.start_s, b.end_s, b.source, b.meta["note"]) == (0.5, 2.0, "m.csv:3", "y")
    assert clip_durations(table) == pytest.approx([2.0, 1.5])


def test_manifest_errors_name_row_and_skip_policy_reports(tmp_path):
    write_tone(tmp_path / "a.wav", 1.0)
    write_text(tmp_path / "m.csv", ["path,label", "a.wav,x", "missing.wav,y", "a.wav,"])
    with pytest.raises(TableFileNotFoundError, match=r"m.csv:3.*missing.wav.*Fix"):
        load_table(tmp_path / "m.csv")
    with pytest.warns(UserWarning, match=r"(?s)skipped 2 row\(s\).*m.csv:3.*m.csv:4"):  # every row listed
        table = load_table(tmp_path / "m.csv", on_error="skip")
    assert len(table) == 1
    assert [s for s, _ in table.skipped] == ["m.csv:3", "m.csv:4"]
    assert "missing label" in table.skipped[1][1]
    with pytest.raises(KeyError, match="recorder.*columns are"):
        load_table(tmp_path / "m.csv", group_columns=["recorder"])


def test_raven_folder_dedupes_views_finds_audio_and_reports_overlaps(raven_dir):
    table = load_table(raven_dir / "tables", label_column="Call type", audio_dir=raven_dir / "audio")
    assert detect_format(raven_dir / "tables") == "raven"
    assert len(table) == 4  # 4 selections, each in two views
    assert sorted(table.classes) == ["duet", "female", "male"]
    first = table[0]
    assert (first.start_s, first.end_s, first.groups["recording"]) == (2.0, 4.0, "rec1")
    # the spectrogram view's row is kept (line 3), with its frequency bounds
    assert first.source == "rec1.Table.1.selections.txt:3" and first.meta["Low Freq (Hz)"] == "500"
    assert table.group_columns == ("recording",)
    same = load_table(raven_dir / "tables", label_column="Call type", audio_dir=raven_dir / "audio",
                      group_columns=["recording"])
    assert same.group_columns == ("recording",) and len(same) == 4
    assert {r.path.rsplit("/", 1)[-1] for r in table} == {"rec1.wav", "rec2.flac"}
    overlaps = [msg for _, msg in table.notes if "overlaps" in msg]
    assert len(overlaps) == 1 and "female" in overlaps[0] and "male" in overlaps[0]


def test_raven_background_windows_avoid_events_and_are_deterministic(raven_dir):
    kwargs = dict(label_column="Call type", audio_dir=raven_dir / "audio", background_windows=3,
                  background_seconds=2.0, background_min_gap_s=1.0, seed=7)
    table = load_table(raven_dir / "tables", **kwargs)
    background = [r for r in table if r.label == "background"]
    assert len(background) == 6
    events = [r for r in table if r.label != "background"]
    for bg in background:
        assert bg.end_s - bg.start_s == pytest.approx(2.0) and 0 <= bg.start_s and bg.end_s <= 30.0
        for ev in (e for e in events if e.path == bg.path):
            assert bg.end_s <= ev.start_s - 1.0 + 1e-9 or bg.start_s >= ev.end_s + 1.0 - 1e-9
    again = load_table(raven_dir / "tables", **kwargs)
    assert [(r.start_s, r.end_s) for r in again] == [(r.start_s, r.end_s) for r in table]
    other = load_table(raven_dir / "tables", **{**kwargs, "seed": 8})
    assert [(r.start_s, r.end_s) for r in other] != [(r.start_s, r.end_s) for r in table]
    (raven_dir / "audio" / "quiet.wav").write_bytes((raven_dir / "audio" / "rec1.wav").read_bytes())
    write_text(raven_dir / "tables" / "quiet.Table.1.selections.txt", [RAVEN_HEADER])  # no events
    with_quiet = load_table(raven_dir / "tables", **kwargs)
    assert sum(r.label == "background" and r.groups["recording"] == "quiet" for r in with_quiet) == 3


def test_raven_begin_file_with_offset_and_missing_audio(tmp_path):
    write_tone(tmp_path / "long_a.wav", 20.0)
    write_text(tmp_path / "list.selections.txt", [
        "Selection\tView\tBegin Time (s)\tEnd Time (s)\tBegin File\tFile Offset (s)\tAnnotation",
        "1\tSpectrogram 1\t25.0\t27.5\tlong_a.wav\t5.0\tcall",
        "2\tSpectrogram 1\t40.0\t41.0\tlost.wav\t1.0\tcall"])
    with pytest.raises(TableFileNotFoundError, match="list.selections.txt:3"):
        load_table(tmp_path / "list.selections.txt")
    with pytest.warns(UserWarning, match="skipped 1 row"):
        table = load_table(tmp_path / "list.selections.txt", on_error="skip")
    assert len(table) == 1 and (table[0].start_s, table[0].end_s) == (5.0, 7.5)
    assert table.skipped[0][0] == "list.selections.txt:3"
    with pytest.raises(KeyError, match="Call type"):
        load_table(tmp_path / "list.selections.txt", label_column="Call type")
    write_tone(tmp_path / "long_a.flac", 20.0)  # two files now answer to "long_a"
    write_text(tmp_path / "long_a.Table.1.selections.txt",
               ["Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation", "1\t1.0\t2.0\tcall"])
    with pytest.raises(TableFileNotFoundError, match="several files match"):
        load_table(tmp_path / "long_a.Table.1.selections.txt")


def test_hainan_tables_find_recordings_and_background(tmp_path):
    write_tone(tmp_path / "Train" / "HGSM3B_0+1_20160308_055700.wav", 40.0)
    write_text(tmp_path / "Labels" / "g_HGSM3B_0+1_20160308_055700.data",
               ["Start,End,Duration,Type,Notes", "3.0,9.5,6.5,gibbon,clear", "20.0,26.0,6.0,gibbon,"])
    assert detect_format(tmp_path / "Labels") == "hainan"
    table = load_table(tmp_path / "Labels", audio_dir=tmp_path / "Train", background_windows=2,
                       background_label="no-gibbon")
    calls = [r for r in table if r.label == "gibbon"]
    assert [(r.start_s, r.end_s) for r in calls] == [(3.0, 9.5), (20.0, 26.0)]
    assert calls[0].meta["Notes"] == "clear" and calls[0].source.endswith(".data:2")
    assert calls[0].groups["recording"] == "HGSM3B_0+1_20160308_055700"
    background = [r for r in table if r.label == "no-gibbon"]
    assert len(background) == 2 and all(r.end_s - r.start_s == pytest.approx(6.2) for r in background)
    with pytest.raises(TableFileNotFoundError, match="no recording named"):
        load_table(tmp_path / "Labels")  # audio is not next to the tables
    with pytest.raises(TableError, match=r"\.data:3: missing group value in column\(s\) \['Notes'\]"):
        load_table(tmp_path / "Labels", audio_dir=tmp_path / "Train", group_columns=["Notes"])


def test_folder_per_class_and_regex_labels(tmp_path):
    write_tone(tmp_path / "byclass" / "duet" / "a.wav", 1.0)
    write_tone(tmp_path / "byclass" / "solo" / "deep" / "b.wav", 1.0)
    table = load_table(tmp_path / "byclass")
    assert [r.label for r in table] == ["duet", "solo"]
    write_tone(tmp_path / "named" / "DK02_duet_01.wav", 1.0)
    write_tone(tmp_path / "named" / "MB05_solo_02.wav", 1.0)
    write_tone(tmp_path / "named" / "readme-tone.wav", 1.0)
    regex = r"(?P<individual>[A-Z]{2}\d{2})_(?P<label>[a-z]+)_"
    with pytest.raises(TableError, match="readme-tone.wav.*label_regex"):
        load_table(tmp_path / "named", label_regex=regex)
    with pytest.warns(UserWarning, match="readme-tone.wav"):
        named = load_table(tmp_path / "named", label_regex=regex, group_columns=["individual"], on_error="skip")
    assert [(r.label, r.groups["individual"]) for r in named] == [("duet", "DK02"), ("solo", "MB05")]
    assert len(named.skipped) == 1 and "readme-tone.wav" in named.skipped[0][0]


def test_window_bounds_and_fit_length():
    assert window_bounds(0, 10, 4, 3) == [(0, 4), (3, 7), (6, 10)]
    assert window_bounds(0, 10, 4, 4) == [(0, 4), (4, 8), (8, 10)]
    assert window_bounds(0, 10, 4, 4, last="drop") == [(0, 4), (4, 8)]
    assert window_bounds(0, 10, 4, 4, last="shift") == [(0, 4), (4, 8), (6, 10)]
    assert window_bounds(1, 2, 4) == [(1, 2)]
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 4, "center"), [3, 4, 5, 6])
    np.testing.assert_array_equal(fit_length(x, 4, "start"), [0, 1, 2, 3])
    np.testing.assert_array_equal(fit_length(x[:2], 4, "center"), [0, 0, 1, 0])
    crops = {tuple(fit_length(x, 4, "random", np.random.default_rng(s))) for s in range(20)}
    assert len(crops) > 1 and all(np.all(np.diff(c) == 1) for c in crops)
    with pytest.raises(ValueError, match="rng"):
        fit_length(x, 4, "random")


def test_overlaps_and_background_sampling():
    from reprogram.data.records import ClipRecord

    recs = [ClipRecord("f", "a", {}, 0, 2), ClipRecord("f", "b", {}, 1, 3), ClipRecord("f", "c", {}, 3, 4),
            ClipRecord("g", "a", {}, 1, 3)]
    assert find_overlaps(recs) == [(0, 1)]
    rng = np.random.default_rng(0)
    windows = sample_background(10.0, [(2.0, 3.0)], 1.0, 50, rng, min_gap_s=1.0)
    assert 0 < len(windows) < 50  # the free time (0-1 s and 4-10 s) holds at most 7 one-second windows
    for s, e in windows:
        assert e <= 1.0 + 1e-9 or s >= 4.0 - 1e-9
    assert all(b[0] >= a[1] - 1e-9 for a, b in zip(windows, windows[1:], strict=False))


def test_window_table_splits_clips(raven_dir):
    table = load_table(raven_dir / "tables", label_column="Call type", audio_dir=raven_dir / "audio")
    windows = window_table(table, 1.0, 0.5, last="drop")
    assert len(windows) == 3 + 2 + 4 + 3  # spans of 2.0, 1.5, 2.5 and 2.0 s
    assert windows[0].meta["window_of"] == table[0].source and windows[0].label == table[0].label


def test_waveform_dataset_decodes_once_and_crops(tmp_path, monkeypatch):
    write_tone(tmp_path / "long.wav", 3.0, sr=16000)
    write_tone(tmp_path / "short.wav", 0.5, sr=16000)
    write_text(tmp_path / "m.csv", ["path,label", "long.wav,a", "short.wav,b"])
    table = load_table(tmp_path / "m.csv")
    import reprogram.data.dataset as ds

    calls = []
    real = ds.load_audio
    monkeypatch.setattr(ds, "load_audio", lambda *a, **k: calls.append(a) or real(*a, **k))
    data = WaveformDataset(table, sample_rate=8000, clip_seconds=1.0, crop="random", seed=3)
    wave, target, index = data[0]
    assert wave.shape == (8000,) and wave.dtype == torch.float32 and (target, index) == (0, 0)
    again = data[0][0]
    data.set_epoch(1)
    later = data[0][0]
    assert torch.equal(wave, again) and not torch.equal(wave, later)
    short = data[1][0]
    assert short.shape == (8000,) and float((short == 0).float().mean()) >= 0.5 - 1e-3
    assert len(calls) == 2  # each clip decoded and resampled once
    assert data.padding_fractions() == pytest.approx([0.0, 0.5])
    assert padding_fractions(table, 1.0) == pytest.approx([0.0, 0.5])
    waves, targets, indices = collate([(torch.ones(3), 1, 0), (torch.ones(5), 0, 1)])
    assert waves.shape == (2, 5) and waves[0, 3:].sum() == 0 and targets.tolist() == [1, 0]
    full = WaveformDataset(table, 8000, None, classes=["b", "a"])
    assert full[1][0].shape == (4000,) and full[1][1] == 0
    with pytest.raises(ValueError, match="crop"):
        WaveformDataset(table, 8000, 1.0, crop="middle")


def test_raven_table_written_on_windows_encoding(tmp_path):
    write_tone(tmp_path / "rec.wav", 5.0)
    text = "Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation\r\n1\t1.0\t2.0\tchant mâle\r\n"
    (tmp_path / "rec.Table.1.selections.txt").write_bytes(text.encode("cp1252"))
    table = load_table(tmp_path / "rec.Table.1.selections.txt")
    assert table.classes == ["chant mâle"] and (table[0].start_s, table[0].end_s) == (1.0, 2.0)


def test_raven_begin_path_from_another_machine_falls_back_to_audio_dir(tmp_path):
    write_tone(tmp_path / "audio" / "site3_0600.wav", 5.0)
    write_text(tmp_path / "tables" / "any_name.txt", [
        "Selection\tBegin Time (s)\tEnd Time (s)\tBegin Path\tAnnotation",
        "1\t1.0\t2.0\tC:\\Users\\field\\site3_0600.wav\tcall"])
    table = load_table(tmp_path / "tables", audio_dir=tmp_path / "audio")
    assert table[0].path == str(tmp_path / "audio" / "site3_0600.wav")
