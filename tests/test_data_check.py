"""``reprogram data check``: every problem named by row and file, exit status, and leakage warnings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from reprogram.cli import main
from reprogram.data import load_table
from reprogram.data.check import check_table, kinds
from reprogram.data.leakage import duration_cue, group_cue

SR = 8000


def write_noise(path, seconds: float, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    sf.write(path, rng.uniform(-0.3, 0.3, int(seconds * SR)).astype(np.float32), SR)


def run_check(capsys, *argv: str) -> tuple[int, dict]:
    status = main(["data", "check", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


@pytest.fixture
def broken(tmp_path):
    """A manifest with one of every problem besides good rows."""
    for i in range(4):
        write_noise(tmp_path / f"ok{i}.wav", 1.0, i)
    nan = np.full(SR, 0.1, dtype=np.float32)
    nan[100:110] = np.nan
    sf.write(tmp_path / "nan.wav", nan, SR, subtype="FLOAT")
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), SR)
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC" + b"\x00" * 64)
    rows = ["path,label,recorder", "ok0.wav,a,R1", "ok1.wav,b,R1", "ok2.wav,a,R2", "ok3.wav,b,R2",
            "nan.wav,a,R1", "empty.wav,b,R2", "corrupt.flac,a,R1", "gone.wav,a,R2", "ok0.wav,,R1", "ok1.wav,a,R1"]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_check_finds_every_problem_and_names_rows(broken, capsys):
    status, report = run_check(capsys, str(broken / "manifest.csv"), "--group-column", "recorder")
    assert status == 1
    by_kind = {}
    for p in report["problems"]:
        by_kind.setdefault(p["kind"], []).append(p)
    assert by_kind["nan_audio"][0]["source"] == "manifest.csv:6" and "nan.wav" in by_kind["nan_audio"][0]["message"]
    assert by_kind["empty_audio"][0]["source"] == "manifest.csv:7"
    assert by_kind["unreadable_file"][0]["source"] == "manifest.csv:8"
    assert "corrupt.flac" in by_kind["unreadable_file"][0]["message"]
    assert by_kind["missing_file"][0]["source"] == "manifest.csv:9"
    assert by_kind["missing_label"][0]["source"] == "manifest.csv:10"
    dup = by_kind["duplicate_row"][0]
    assert dup["source"] == "manifest.csv:11" and "manifest.csv:3" in dup["message"]
    assert "different label" in dup["message"]
    assert all(p["severity"] == "error" for k in ("nan_audio", "missing_file", "duplicate_row") for p in by_kind[k])
    assert report["n_clips"] == 7  # 10 rows minus the corrupt, missing and unlabelled ones


def test_skip_policy_turns_load_errors_into_warnings(broken, capsys):
    status, report = run_check(capsys, str(broken / "manifest.csv"), "--on-error", "skip", "--no-leakage")
    skipped = [p for p in report["problems"] if p["kind"] == "skipped_row"]
    assert {p["source"] for p in skipped} == {"manifest.csv:8", "manifest.csv:9", "manifest.csv:10"}
    assert all(p["severity"] == "warning" for p in skipped)
    assert status == 1  # NaN, empty audio and the duplicate are still errors


def test_clean_dataset_passes_and_summary_prints(tmp_path, capsys):
    for i in range(6):
        write_noise(tmp_path / f"c{i}.wav", 1.0 + 0.1 * i, i)
    rows = ["path,label,site"] + [f"c{i}.wav,{'ab'[i % 2]},S{i % 3}" for i in range(6)]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    status, report = run_check(capsys, str(tmp_path), "--group-column", "site")
    assert status == 0 and report["n_errors"] == 0
    assert report["classes"] == {"a": 3, "b": 3} and report["n_groups"] == {"site": 3}
    assert report["sample_rates"] == {str(SR): 6}
    assert report["durations"]["max_s"] == pytest.approx(1.5)
    assert main(["data", "summary", str(tmp_path), "--group-column", "site"]) == 0
    out = capsys.readouterr().out
    assert "6 clips, 2 classes" in out and "S0 (2)" in out


def test_bad_arguments_exit_1_with_message(tmp_path, capsys):
    write_noise(tmp_path / "a.wav", 0.5)
    (tmp_path / "manifest.csv").write_text("path,label\na.wav,x\n")
    assert main(["data", "check", str(tmp_path), "--label-column", "species"]) == 1
    assert "species" in capsys.readouterr().err


def test_raven_overlaps_are_warnings(tmp_path):
    write_noise(tmp_path / "rec.wav", 10.0)
    lines = ["Selection\tView\tBegin Time (s)\tEnd Time (s)\tAnnotation",
             "1\tSpectrogram 1\t1.0\t3.0\tcall", "2\tSpectrogram 1\t2.0\t4.0\tcall", "3\tSpectrogram 1\t6\t7\tcall"]
    (tmp_path / "rec.Table.1.selections.txt").write_text("\n".join(lines) + "\n")
    report = check_table(load_table(tmp_path, on_error="skip"), leakage=False)
    assert not report.errors and kinds(report.warnings)["overlapping_annotations"] == 1


def test_leakage_cues_warn_only_when_a_cue_predicts_the_label(tmp_path):
    from reprogram.data.records import ClipRecord, ClipTable

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"] * 30
    records = [ClipRecord(f"{i}.wav", lab, {"rec": f"R{(i // 3) % 6}", "site": f"S{'abc'.index(lab)}"})
               for i, lab in enumerate(labels)]
    table = ClipTable(records, "label", ("rec", "site"))
    cued = [{"a": 2.0, "b": 5.0, "c": 5.0}[lab] + rng.uniform(0, 0.3) for lab in labels]  # a: short clips
    flat = rng.uniform(4.5, 5.0, len(labels)).tolist()
    hit = duration_cue(table, cued)
    assert hit.warn and hit.balanced_accuracy > 0.6 and hit.chance == pytest.approx(1 / 3)
    miss = duration_cue(table, flat)
    assert not miss.warn and miss.balanced_accuracy < 0.55
    assert group_cue(table, "site").warn and group_cue(table, "site").balanced_accuracy == pytest.approx(1.0)
    assert not group_cue(table, "rec").warn  # every recorder holds every class


def test_split_cli_prints_reports(tmp_path, capsys):
    for i in range(12):
        write_noise(tmp_path / f"c{i}.wav", 0.5, i)
    rows = ["path,label,recorder"] + [f"c{i}.wav,{'ab'[i % 2]},R{i // 2}" for i in range(12)]
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    assert main(["data", "split", str(tmp_path), "--group-column", "recorder", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["shared_groups"] == [] and sum(p["clips"] for p in report["parts"].values()) == 12
    assert main(["data", "split", str(tmp_path), "--kind", "logo", "--group-column", "recorder"]) == 0
    assert capsys.readouterr().out.count("test=R") == 6
    assert main(["data", "split", str(tmp_path), "--kind", "grouped-kfold"]) == 1
    assert "--group-column" in capsys.readouterr().err
