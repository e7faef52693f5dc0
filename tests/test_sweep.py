"""Sweeps: grid expansion, and a sweep killed part-way then restarted ends with the uninterrupted sweep's runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from reprogram.experiment.config import ConfigError, run_id
from reprogram.experiment.results import read_results, result_files
from reprogram.experiment.sweep import expand, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "name": "sweep-test",
    "config": {
        "data": {"path": "synthetic:caller_id", "clip_seconds": 1.0},
        "task": {"label_column": "individual", "group_column": None},
        "split": {"kind": "kfold", "n_folds": 3},
    },
    "methods": [{"name": "mfcc"}],
    "seeds": [0],
    "folds": "all",
}
VOLATILE = ("wall_time_s", "peak_memory_mb", "environment", "created")


def test_expand_grid_and_errors():
    spec = {
        "methods": [
            {"name": "program", "options": {"transform": "pad"}, "backbones": ["offline:efficientnet_lite0"],
             "budgets": [8, 16]},
            {"name": "lora", "budgets": [4]},
            {"name": "mfcc"},
        ],
        "backbones": ["offline:whisper_tiny_en", "tiny:hubert"],
        "seeds": [0, 1, 2],
        "folds": [0],
    }
    configs = expand(spec)
    assert len(configs) == (2 * 1 + 1 * 2 + 1) * 3
    assert len({run_id(c) for c in configs}) == len(configs)
    lora = [c for c in configs if c.method.name == "lora"]
    assert {c.backbone.name for c in lora} == {"offline:whisper_tiny_en", "tiny:hubert"}
    assert {c.method.budget for c in configs if c.method.name == "program"} == {8, 16}
    assert expand({**spec, "folds": [0]})[0].split.fold == 0
    with pytest.raises(ConfigError, match="seeds"):
        expand({**spec, "seedz": [0]})
    with pytest.raises(ConfigError, match="training.lr"):
        expand({**spec, "set": {"training.lrr": 1.0}})


def _metrics(out: Path) -> dict:
    return {r["run_id"]: {k: v for k, v in r.items() if k not in VOLATILE} for r in read_results(out)}


def test_killed_sweep_resumes_to_the_uninterrupted_result(tmp_path):
    reference = tmp_path / "reference"
    summary = run_sweep(SPEC, reference, executor="submitit-debug", log=lambda *_: None)
    assert len(summary["completed"]) == 3 and not summary["failed"]

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "reprogram.cli", "sweep", str(sweep_file), "--out", str(out), "--jobs", "1"],
        cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (out / "runs").is_dir():
        time.sleep(0.2)
    while time.monotonic() < deadline and proc.poll() is None and not result_files(out):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker processes, mid-sweep
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in result_files(out)}
    assert 1 <= len(before) < 3, "the sweep should have been killed part-way"

    summary = run_sweep(sweep_file, out, executor="local", jobs=2, log=lambda *_: None)
    assert sorted(summary["skipped"]) == sorted(p.parent.name for p in before)
    assert len(summary["completed"]) == 3 - len(before) and not summary["failed"]
    assert {p: p.stat().st_mtime_ns for p in before} == before  # completed runs were not recomputed
    assert _metrics(out) == _metrics(reference)

    again = run_sweep(sweep_file, out, executor="local", log=lambda *_: None)
    assert again["completed"] == [] and len(again["skipped"]) == 3
