"""The real recordings in ../shared/data (skipped where absent): counts, grouped splits, and ``data check``."""

from __future__ import annotations

import json

import pytest

from reprogram.cli import main
from reprogram.data import load_table
from reprogram.data.dataset import WaveformDataset
from reprogram.data.splits import grouped_kfold, grouped_split, split_report, stratified_kfold

pytestmark = pytest.mark.shared_data

DANUM_CLASSES = ["duet", "hornbill.helmeted", "hornbill.rhino", "long.argus", "noise"]


@pytest.fixture(scope="module")
def danum(danum_dir):
    return load_table(danum_dir / "manifest.csv", label_column="label", group_columns=["recorder"])


def test_danum_loads_602_clips_5_classes_7_recorders(danum):
    assert len(danum) == 602 and not danum.skipped
    assert danum.classes == DANUM_CLASSES
    assert sorted(set(danum.group_values("recorder"))) == [f"S{i}" for i in range(10, 17)]


def test_danum_grouped_split_puts_no_recorder_in_two_parts(danum):
    for seed in (0, 1):
        split = grouped_split(danum, "recorder", seed=seed)
        report = split_report(danum, split, "recorder")
        assert report["shared_groups"] == [] and report["missing"] == []
        parts = [set(report["parts"][p]["groups"]) for p in ("train", "val", "test")]
        assert all(parts) and set.union(*parts) == set(danum.group_values("recorder"))
        assert sum(len(idx) for idx in split.parts().values()) == 602
    for fold in grouped_kfold(danum, "recorder", k=3):
        assert split_report(danum, fold, "recorder")["shared_groups"] == []


def test_danum_waveforms_at_the_backbone_rate(danum):
    data = WaveformDataset(danum.subset(range(3)), sample_rate=22050, clip_seconds=4.0)
    wave, target, _ = data[0]
    assert wave.shape == (88200,) and target == DANUM_CLASSES.index(danum[0].label)
    assert float(wave.abs().max()) > 0


def test_caller_id_has_12_individuals_of_5_calls(caller_id_dir):
    table = load_table(caller_id_dir, label_column="individual", group_columns=["site"])
    assert len(table) == 60 and len(table.classes) == 12
    assert {table.labels.count(c) for c in table.classes} == {5}
    folds = stratified_kfold(table, k=5)
    assert all(len(f.test) == 12 and len({table[i].label for i in f.test}) == 12 for f in folds)


def test_data_check_cli_reports_danum_numbers(danum_dir, capsys):
    status = main(["data", "check", str(danum_dir / "manifest.csv"), "--label-column", "label",
                   "--group-column", "recorder", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0 and report["n_errors"] == 0
    assert (report["n_clips"], report["n_classes"], report["n_groups"]) == (602, 5, {"recorder": 7})
    assert report["sample_rates"] == {"16000": 602}
    cues = {c["cue"]: c for c in report["leakage"]}
    assert set(cues) == {"duration+padding", "group:recorder"}
    assert not cues["duration+padding"]["warn"]  # every clip was centre-cropped to 5 s
