"""Issue 17: inputs that used to train on wrong or leaked data, or lose a report, without a word."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf

from reprogram.data.integrity import DataConflictError
from reprogram.data.manifest import TableError
from reprogram.experiment.config import ConfigError, load_config
from reprogram.experiment.runner import run_experiment

RATE = 16_000


def _tone(path, freq: float, seconds: float = 1.0, rate: int = RATE, channels: int = 1, seed: int = 0) -> None:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(str(path), np.stack([wave] * channels, axis=1) if channels > 1 else wave, rate)


def _manifest(tmp_path, rows: list[str], n: int = 16) -> str:
    """``n`` good 1 s clips of two classes over four recorders, then ``rows`` (raw CSV lines)."""
    lines = ["path,label,recorder"]
    for i in range(n):
        label = "call" if i % 2 else "noise"
        _tone(tmp_path / f"c{i}.wav", 800 if label == "call" else 200, seed=i)
        lines.append(f"c{i}.wav,{label},R{i % 4}")
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines + rows) + "\n")
    return str(path)


def _config(manifest: str, *extra: str):
    return load_config(None, [f"data.path={manifest}", "task.label_column=label", "task.group_column=null",
                              "split.kind=kfold", "split.n_folds=4",
                              "method.name=mfcc", "data.clip_seconds=1.0", *extra])


def test_raven_row_naming_a_missing_file_is_never_read_from_the_tables_recording(tmp_path):
    from reprogram.data.raven import load_raven

    _tone(tmp_path / "recA.flac", 500, seconds=20)
    header = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation\tBegin File"
    rows = [f"{i}\tSpectrogram 1\t1\t{2 * i}\t{2 * i + 1}\tcall\t{'missing.flac' if i == 5 else 'recA.flac'}"
            for i in range(1, 8)]
    table = tmp_path / "recA.Table.1.selections.txt"
    table.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(TableError, match=r"recA\.Table\.1\.selections\.txt:6: no audio file.*'missing\.flac'"):
        load_raven(str(table))
    with pytest.warns(UserWarning, match="skipped 1 row"):
        loaded = load_raven(str(table), on_error="skip")
    assert [r.source for r in loaded] == [f"recA.Table.1.selections.txt:{i + 1}" for i in (1, 2, 3, 4, 6, 7)]
    assert loaded.skipped[0][0] == "recA.Table.1.selections.txt:6"


def test_run_refuses_duplicate_rows_naming_both(tmp_path):
    manifest = _manifest(tmp_path, ["c1.wav,call,R1"])
    with pytest.raises(DataConflictError, match=r"table.csv:18: duplicates row table.csv:3"):
        run_experiment(_config(manifest), tmp_path / "out", use_cache=False)
    assert not (tmp_path / "out").exists()  # nothing written


def test_run_refuses_audio_under_two_groups_also_as_a_copy(tmp_path):
    manifest = _manifest(tmp_path, ["c2.wav,noise,R3"])  # c2.wav is R2 in row 4
    config = load_config(None, [f"data.path={manifest}", "method.name=mfcc", "task.label_column=label",
                                "task.group_column=recorder"])
    with pytest.raises(DataConflictError, match=r"group_conflict.*c2\.wav is listed under recorder='R3' here and "
                                                r"under recorder='R2' in row table.csv:4"):
        run_experiment(config, tmp_path / "out", use_cache=False)
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "c2.wav").write_bytes((tmp_path / "c2.wav").read_bytes())
    manifest = _manifest(tmp_path, ["copy/c2.wav,noise,R3"])
    config = load_config(None, [f"data.path={manifest}", "method.name=mfcc", "task.label_column=label",
                                "task.group_column=recorder"])
    with pytest.raises(DataConflictError, match="byte-identical copy"):
        run_experiment(config, tmp_path / "out", use_cache=False)


def test_every_skipped_row_is_reported_and_recorded(tmp_path, caplog):
    (tmp_path / "empty.wav").write_bytes(b"")
    manifest = _manifest(tmp_path, ["absent.wav,call,R0", "empty.wav,noise,R1"])
    with caplog.at_level(logging.WARNING, logger="reprogram"):
        result = run_experiment(_config(manifest, "data.on_error=skip"), tmp_path / "out", use_cache=False)
    skipped = result["data_report"]["skipped"]
    assert [s[0] for s in skipped] == ["table.csv:18", "table.csv:19"]
    text = caplog.text
    assert "warning [skipped_row] table.csv:18" in text and "warning [skipped_row] table.csv:19" in text


def test_extreme_but_readable_files_are_reported_once_per_run(tmp_path, caplog):
    _tone(tmp_path / "tiny.wav", 800, seconds=0.05)
    _tone(tmp_path / "long.flac", 800, seconds=600, rate=8000)
    _tone(tmp_path / "stereo.wav", 200, rate=48_000, channels=2)
    manifest = _manifest(tmp_path, ["tiny.wav,call,R0", "long.flac,call,R1", "stereo.wav,noise,R2"])
    with caplog.at_level(logging.WARNING, logger="reprogram"):
        result = run_experiment(_config(manifest), tmp_path / "out", use_cache=False)
    counts = result["data_report"]["counts"]
    assert (counts["short"], counts["long"], counts["resampled"], counts["multichannel"]) == (1, 1, 2, 1)
    assert result["data_report"]["long"][0][:2] == ["table.csv:19", str(tmp_path / "long.flac")]
    for kind in ("short", "long", "resampled", "multichannel"):
        assert caplog.text.count(f"note [{kind}]") == 1


def test_semicolon_csv_points_to_the_delimiter_option(tmp_path):
    from reprogram.cli import main
    from reprogram.data.loaders import load_table

    _tone(tmp_path / "a.wav", 300)
    (tmp_path / "semi.csv").write_text("path;label\na.wav;call\n")
    with pytest.raises(KeyError, match=r"semicolon-separated\. Fix: pass delimiter=';'"):
        load_table(str(tmp_path / "semi.csv"))
    assert len(load_table(str(tmp_path / "semi.csv"), delimiter=";")) == 1
    assert main(["data", "check", str(tmp_path / "semi.csv"), "--delimiter", ";", "--no-leakage"]) == 0


def test_hints_point_the_right_way(tmp_path):
    with pytest.raises(ConfigError, match="Did you mean 'training.lr'"):
        load_config(None, ["training.learning_rate=0.1"])
    manifest = _manifest(tmp_path, [])
    two = tmp_path / "two.csv"
    two.write_text("\n".join(line.replace(",R2", ",R0").replace(",R3", ",R1")
                             for line in open(manifest).read().splitlines()) + "\n")
    with pytest.raises(ValueError, match="split.kind=logo or split.kind=group_kfold"):
        run_experiment(load_config(None, [f"data.path={two}", "method.name=mfcc", "task.label_column=label",
                                "task.group_column=recorder"]),
                       tmp_path / "out", use_cache=False)
    with pytest.raises(ValueError, match="Fix: use a speech backbone"):
        run_experiment(_config(manifest, "method.name=linear_probe", "backbone.name=tiny:vit"), tmp_path / "o2",
                       use_cache=False)


def test_hf_backbone_accepts_only_loading_options():
    import backbones

    with pytest.raises(ValueError, match=r"\['hidden_size'\] are not loading options of hf:some/model"):
        backbones.create("hf:some/model", hidden_size=8)
