"""The MFCC baseline: feature shapes, cross-validated evaluation, and its level on synthetic and real tasks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from reprogram.data.loaders import load_table
from reprogram.data.splits import leave_one_group_out, stratified_kfold
from reprogram.data.synthetic import SyntheticConfig, generate_corpus, task_manifest
from reprogram.methods.mfcc import evaluate_mfcc_baseline, mfcc_features, table_features

CALLER_ID = SyntheticConfig(
    seed=0,
    n_individuals=6,
    n_recorders=3,
    female_calls_per_individual=7,
    duets_per_individual=1,
    male_calls_per_individual=0,
    noise_clips_per_recorder=0,
)


@pytest.fixture(scope="module")
def caller_id(tmp_path_factory):
    """The caller-ID table of a small synthetic corpus (6 females x 8 calls) and its MFCC features."""
    manifest = generate_corpus(tmp_path_factory.mktemp("mfcc") / "corpus", CALLER_ID)
    table = load_table(task_manifest(manifest, "caller_id"), label_column="individual", group_columns=("recorder",))
    return table, table_features(table, 16000)


def test_feature_shapes_and_batching():
    rng = np.random.default_rng(0)
    waves = rng.standard_normal((3, 16000)).astype(np.float32)
    assert mfcc_features(waves, 16000).shape == (3, 120)  # 20 MFCC x (static, delta, delta2) x (mean, std)
    assert mfcc_features(waves, 16000, deltas=0).shape == (3, 40)
    assert mfcc_features(waves, 16000, n_mfcc=13, deltas=1).shape == (3, 52)
    mixed = [waves[0], waves[1, :8000], waves[2]]
    feats = mfcc_features(mixed, 16000)
    assert feats.shape == (3, 120) and np.isfinite(feats).all()
    one_by_one = np.concatenate([mfcc_features([w], 16000) for w in mixed])
    np.testing.assert_allclose(feats, one_by_one, rtol=1e-5, atol=1e-4)
    # a clip's features do not depend on its batch-mates (torchaudio's top_db floor must be per clip)
    quiet = (1e-3 * rng.standard_normal(16000)).astype(np.float32)
    quiet[:8000] *= 1e-6  # near-silence: 120 dB below the loud clip
    alone = mfcc_features([quiet], 16000)
    np.testing.assert_allclose(mfcc_features([quiet, 30 * waves[0]], 16000)[:1], alone, rtol=1e-5, atol=1e-4)
    # a higher tone moves the cepstrum: the features see the signal, not just its length
    t = np.arange(16000) / 16000
    tones = mfcc_features(np.stack([np.sin(2 * np.pi * 600 * t), np.sin(2 * np.pi * 1400 * t)]), 16000)
    assert np.abs(tones[0, :20] - tones[1, :20]).max() > 1.0


@pytest.mark.parametrize(
    "kwargs, match",
    [({"deltas": 3}, "deltas"), ({"n_mfcc": 50}, "n_mels"), ({"f_max": 9000.0}, "f_max")],
)
def test_feature_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mfcc_features(np.zeros((1, 16000), dtype=np.float32), 16000, **kwargs)


def test_short_or_bad_clip_is_named():
    with pytest.raises(ValueError, match="clip 1"):
        mfcc_features([np.zeros(16000), np.zeros(100)], 16000)
    with pytest.raises(ValueError, match="clip 0"):
        mfcc_features([np.full(16000, np.nan)], 16000)


def test_caller_id_beats_chance_but_is_not_solved(caller_id):
    table, features = caller_id
    folds = stratified_kfold(table, k=4, seed=0, val=False)
    chance = 1 / 6
    shuffled = np.random.default_rng(0).permutation(table.labels)
    for classifier in ("logreg", "random_forest"):
        result = evaluate_mfcc_baseline(features, table.labels, folds, classifier, seed=0)
        assert result["chance_balanced_accuracy"] == pytest.approx(chance)
        bal = result["mean"]["balanced_accuracy"]
        assert chance + 0.15 < bal < 0.95, (classifier, bal)
        control = evaluate_mfcc_baseline(features, shuffled, folds, classifier, seed=0)
        assert control["mean"]["balanced_accuracy"] < bal, classifier
        assert len(result["folds"]) == 4
        assert all(0 <= f[m] <= 1 for f in result["folds"] for m in ("balanced_accuracy", "accuracy", "macro_f1"))
        assert all(p is not None for p in result["predictions"])  # the test folds partition the table
        pred, truth = np.array(result["predictions"]), np.array(table.labels)
        recalls = [np.mean(pred[truth == c] == c) for c in table.classes]
        assert result["pooled"]["balanced_accuracy"] == pytest.approx(np.mean(recalls))


def test_table_input_matches_feature_input(caller_id):
    table, features = caller_id
    folds = stratified_kfold(table, k=3, seed=1, val=False)
    from_table = evaluate_mfcc_baseline(table, None, folds, "logreg")
    from_features = evaluate_mfcc_baseline(features, table.labels, folds, "logreg")
    assert from_table["mean"] == from_features["mean"]
    assert from_table["predictions"] == from_features["predictions"]


def test_evaluation_errors(caller_id):
    table, features = caller_id
    n = len(table)
    with pytest.raises(ValueError, match="share clips"):
        evaluate_mfcc_baseline(features, table.labels, [(range(n), [0])])
    with pytest.raises(ValueError, match="unknown classifier"):
        evaluate_mfcc_baseline(features, table.labels, [(range(1, n), [0])], classifier="svm")
    with pytest.raises(ValueError, match="targets"):
        evaluate_mfcc_baseline(features, table.labels[:-1], [(range(1, n), [0])])
    with pytest.raises(ValueError, match=r"clips \[1\] have no label"):
        evaluate_mfcc_baseline(features, [table.labels[0], None, *table.labels[2:]], [(range(2, n), [0, 1])])
    with pytest.raises(ValueError, match="no folds"):
        evaluate_mfcc_baseline(features, table.labels, [])


@pytest.mark.shared_data
@pytest.mark.slow
def test_danum_recorder_grouped_beats_chance(danum_dir):
    table = load_table(danum_dir / "manifest.csv", label_column="label", group_columns=("recorder",))
    folds = leave_one_group_out(table, "recorder", val_fraction=0.0)
    result = evaluate_mfcc_baseline(table, None, folds, "logreg", seed=0)
    assert len(result["folds"]) == 7
    assert result["mean"]["balanced_accuracy"] > result["chance_balanced_accuracy"] + 0.1


def test_benchmark_main_runs_on_a_tiny_corpus(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mfcc_baseline.py"
    spec = importlib.util.spec_from_file_location("mfcc_benchmark", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    tiny = [
        "n_individuals=3",
        "n_recorders=2",
        "female_calls_per_individual=4",
        "duets_per_individual=1",
        "male_calls_per_individual=1",
        "noise_clips_per_recorder=2",
        "clip_s=4.0",
    ]
    argv = ["--skip-real", "--seeds", "0", "--cache-dir", str(tmp_path / "cache"), "--json", str(tmp_path / "r.json")]
    assert bench.main(argv + [a for t in tiny for a in ("--synthetic", t)]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert {(r["dataset"], r["classifier"]) for r in rows} == {
        (f"synthetic/{t}", c)
        for t in ("call_type", "caller_id", "caller_id_cross_recorder", "presence")
        for c in ("logreg", "random_forest")
    }
    assert all(0 <= r["balanced_accuracy_mean"] <= 1 for r in rows)
    assert "synthetic/caller_id" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--skip-real", "--synthetic", "snr=3"])


def test_one_definition_of_macro_f1_and_balanced_accuracy():
    """The benchmark and the runner score the same predictions identically; a prediction of a class absent from
    the test part is penalised once (lost recall), not again as an extra zero-F1 class."""
    from sklearn.metrics import balanced_accuracy_score, f1_score

    from reprogram.experiment.metrics import classification_metrics

    classes = ["a", "b", "c"]
    truth = np.array([0, 0, 0, 1, 1, 1])  # class c is absent from this test part
    pred = np.array([0, 0, 2, 1, 1, 0])  # one clip predicted as the absent class
    m = classification_metrics(truth, np.eye(3)[pred], classes)
    assert m["macro_f1"] == pytest.approx(f1_score(truth, pred, labels=[0, 1], average="macro", zero_division=0))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, pred))
    perfect = classification_metrics(truth, np.eye(3)[truth], classes)
    assert perfect["macro_f1"] == perfect["balanced_accuracy"] == 1.0  # an absent class does not cap the score
    features = np.r_[np.zeros((6, 2)), np.ones((6, 2))] + np.random.default_rng(0).normal(0, 0.8, (12, 2))
    labels = ["a"] * 6 + ["b"] * 6
    result = evaluate_mfcc_baseline(features, labels, [(range(3, 9), [0, 1, 2, 9, 10, 11])])
    fold_pred = np.array([result["predictions"][i] == "b" for i in (0, 1, 2, 9, 10, 11)], dtype=int)
    same = classification_metrics([0, 0, 0, 1, 1, 1], np.eye(2)[fold_pred], ["a", "b"])
    for metric in ("balanced_accuracy", "accuracy", "macro_f1"):
        assert result["folds"][0][metric] == pytest.approx(same[metric])
