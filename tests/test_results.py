"""Result files: atomic writes, provenance, tidy rows, corrupt files reported; the runner end to end (MFCC)."""

from __future__ import annotations

import csv
import json

import pytest

from reprogram.experiment.config import load_config, run_id
from reprogram.experiment.results import (
    CorruptResultError,
    environment,
    read_result,
    read_results,
    result_path,
    tidy_rows,
    write_result,
)
from reprogram.experiment.runner import run_experiment

MFCC = ["data.path=synthetic", "data.clip_seconds=1.0", "task.label_column=call_type", "task.group_column=recorder",
        "method.name=mfcc"]


@pytest.fixture(scope="module")
def mfcc_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    config = load_config(None, MFCC)
    return out, config, run_experiment(config, out)


def test_runner_writes_a_complete_result(mfcc_run):
    out, config, result = mfcc_run
    path = result_path(out, run_id(config))
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    saved = read_result(path)
    assert saved["run_id"] == run_id(config) and saved["config"]["method"]["name"] == "mfcc"
    assert saved["seed"] == 0 and saved["fold"] == 0 and saved["task"] == "call_type" and saved["backbone"] is None
    assert set(saved["metrics"]) == {"train", "val", "test"}
    test = saved["metrics"]["test"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class_recall", "confusion_matrix"):
        assert key in test
    assert sum(map(sum, test["confusion_matrix"])) == test["n"] == saved["split"]["sizes"]["test"]
    assert saved["params"]["trainable"] == saved["params"]["total"] > 0
    assert saved["wall_time_s"] > 0 and saved["peak_memory_mb"]["rss"] > 0
    env = saved["environment"]
    assert env["packages"]["torch"] and env["packages"]["scikit-learn"] and env["git_commit"]
    assert len(saved["predictions"]["test"]["scores"]) == test["n"]
    # the split is grouped: no recorder in two parts
    groups = [set(saved["split"]["groups"][p].split(",")) for p in ("train", "val", "test")]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])


def test_completed_run_is_skipped(mfcc_run):
    out, config, result = mfcc_run
    path = result_path(out, run_id(config))
    before = path.stat().st_mtime_ns
    assert run_experiment(config, out) == result
    assert path.stat().st_mtime_ns == before


def test_corrupt_result_is_reported_never_overwritten(mfcc_run, tmp_path):
    out, config, result = mfcc_run
    folder = tmp_path / "copy"
    path = result_path(folder, result["run_id"])
    path.parent.mkdir(parents=True)
    path.write_text('{"run_id": "truncated...')
    with pytest.raises(CorruptResultError, match=str(path)):
        read_results(folder)
    with pytest.raises(CorruptResultError, match="delete it to recompute"):
        run_experiment(config, folder)
    assert path.read_text() == '{"run_id": "truncated...'
    path.write_text(json.dumps({"run_id": "x"}))
    with pytest.raises(CorruptResultError, match="lacks"):
        read_result(path)


def test_tidy_rows(mfcc_run):
    out, _, result = mfcc_run
    rows = tidy_rows(read_results(out))
    bal = [r for r in rows if r["split"] == "test" and r["metric"] == "balanced_accuracy"]
    assert len(bal) == 1 and bal[0]["value"] == result["metrics"]["test"]["balanced_accuracy"]
    assert bal[0]["method"] == "mfcc" and bal[0]["variant"] == "" and bal[0]["seed"] == 0
    assert any(r["metric"].startswith("recall[") for r in rows)


def test_external_test_set_and_detection(mfcc_run, tmp_path):
    """Train and select on the corpus, report on another table; a presence task adds ROC-AUC and AP."""
    out, config, result = mfcc_run
    from reprogram.experiment.inputs import load_data

    table = load_data(None, config)
    external = tmp_path / "external.csv"
    with external.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "call_type", "presence", "recorder"])
        noise = [r for r in table.records if r.label == "noise"][:4]
        calls = [r for r in table.records if r.label != "noise"][:8]
        for rec in noise + calls:
            writer.writerow([rec.path, rec.label, "none" if rec.label == "noise" else "gibbon", rec.groups["recorder"]])
    cfg = load_config(None, MFCC + [f"data.test_path={external}"])
    res = run_experiment(cfg, tmp_path / "ext")
    assert res["metrics"]["external"]["n"] == 12 and res["split"]["sizes"]["external"] == 12
    assert run_id(cfg) != run_id(config)

    det = load_config(None, MFCC + ["task.label_column=presence", "task.detection=true",
                                    "task.positive_label=gibbon", f"data.test_path={external}"])
    res = run_experiment(det, tmp_path / "det")
    for split in ("val", "test", "external"):
        assert 0 <= res["metrics"][split]["roc_auc"] <= 1 and 0 <= res["metrics"][split]["average_precision"] <= 1
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,call_type,recorder\n{table.records[0].path},hoot,R1\n")
    with pytest.raises(ValueError, match="hoot"):
        run_experiment(load_config(None, MFCC + [f"data.test_path={bad}"]), tmp_path / "bad")


def test_write_result_is_atomic_and_environment(tmp_path):
    result = {"schema": 1, "run_id": "abc", "config": {}, "method": "m", "backbone": None, "modality": "x",
              "task": "t", "seed": 0, "fold": 0, "params": {}, "metrics": {}, "wall_time_s": 1.0,
              "peak_memory_mb": {}, "environment": environment()}
    path = write_result(tmp_path, result)
    assert read_result(path) == result and [p.name for p in path.parent.iterdir()] == ["result.json"]
    assert result["environment"]["git_commit"] != ""


def test_setting_and_eval_set_columns():
    """``setting`` changes with any config value outside the system columns, seed and fold; ``eval_set`` names the
    clips scored (fold-dependent for test, shared by every fold for an external set)."""
    from reprogram.experiment.config import to_dict
    from reprogram.experiment.results import eval_set, setting

    def cfg(*extra):
        return to_dict(load_config(None, ["split.kind=kfold", *extra]))

    base = setting(cfg())
    for same in (["seed=3"], ["split.fold=2"], ["method.name=lora", "method.budget=4"], ["backbone.name=x"],
                 ["method.options.transform=pad"], ["name=other"], ["output.tags.run=a"]):
        assert setting(cfg(*same)) == base, same
    for other in (["training.lr=0.1"], ["data.path=elsewhere.csv"], ["split.seed=1"], ["data.clip_seconds=2.0"],
                  ["split.kind=group_kfold"], ["backbone.options.layer=3"]):
        assert setting(cfg(*other)) != base, other
    assert eval_set(cfg("seed=1", "method.name=mfcc"), "test") == eval_set(cfg(), "test")
    assert eval_set(cfg("split.fold=1"), "test") != eval_set(cfg(), "test") != eval_set(cfg(), "val")
    ext = ["data.test_path=ext.csv"]
    assert eval_set(cfg("split.fold=1", *ext), "external") == eval_set(cfg(*ext), "external")
    changed = {"data": "other-digest"}  # same path, other file contents (the runner's data_fingerprint)
    assert setting(cfg(), changed) != setting(cfg(), {"data": "digest"})
    assert eval_set(cfg(), "test", changed) != eval_set(cfg(), "test", {"data": "digest"})


def test_provenance_is_the_code_a_run_started_with(monkeypatch, tmp_path):
    """A checkout that moves while a run trains (a sweep's later jobs, a ``git pull``) must not relabel the run:
    ``environment.git_commit`` is read when the run starts, not when its result is written."""
    import reprogram.experiment.results as results
    import reprogram.methods

    head = {"commit": "commit-at-start"}
    build = reprogram.methods.build

    def build_then_move_head(*args, **kwargs):  # the checkout changes while the run is under way
        head["commit"] = "commit-later"
        return build(*args, **kwargs)

    monkeypatch.setattr(results, "git_commit", lambda: head["commit"])
    monkeypatch.setattr(reprogram.methods, "build", build_then_move_head)
    res = run_experiment(load_config(None, MFCC), tmp_path)
    assert head["commit"] == "commit-later" and res["environment"]["git_commit"] == "commit-at-start"
