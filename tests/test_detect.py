"""Detection over long recordings (issue 15): saved classifiers, streamed windows, events, Raven tables,
event-level matching, and one end-to-end run of an MFCC detector on a recording stitched from synthetic clips."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from reprogram.data.raven import load_raven
from reprogram.detect import EventRule, average_precision, class_events, match_events, stream_windows
from reprogram.detect.stream import window_starts
from reprogram.detect.tables import read_truth, write_selections
from reprogram.methods.classifier_io import UnsavableClassifier, classifier_from_state, classifier_state
from reprogram.methods.mfcc import make_classifier


@pytest.mark.parametrize("k", [2, 3])
def test_saved_logreg_predicts_as_the_fitted_one(k):
    rng = np.random.default_rng(k)
    x, y = rng.normal(size=(80, 6)), rng.integers(0, k, 80)
    model = make_classifier("logreg").fit(x, y)
    arrays, meta = classifier_state(model)
    json.dumps(meta)  # the metadata is plain JSON
    loaded = classifier_from_state(arrays, meta)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))  # same arrays, same arithmetic
    with pytest.raises(UnsavableClassifier, match="RandomForestClassifier"):
        classifier_state(make_classifier("random_forest").fit(x, y))


def test_window_starts_cover_the_end():
    np.testing.assert_allclose(window_starts(10.0, 4.0, 2.0), [0, 2, 4, 6])  # last full window ends at 10
    np.testing.assert_allclose(window_starts(11.0, 4.0, 2.0), [0, 2, 4, 6, 8])  # 8-12 padded
    np.testing.assert_allclose(window_starts(3.0, 4.0, 1.0), [0])


@pytest.mark.parametrize("file_rate", [16000, 8000])
def test_streamed_windows_match_the_whole_file(tmp_path, file_rate):
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(int(23.3 * file_rate))).astype(np.float32)
    path = tmp_path / "long.wav"
    sf.write(path, wave, file_rate, subtype="FLOAT")
    from reprogram.data.audio import load_audio

    whole, _ = load_audio(path, 16000)
    starts, windows = zip(*stream_windows(path, 16000, 2.0, 0.7, batch=5, chunk_s=4.0), strict=True)
    starts, windows = np.concatenate(starts), np.concatenate(windows)
    np.testing.assert_allclose(starts, window_starts(23.3, 2.0, 0.7))
    for t, w in zip(starts, windows, strict=True):
        s = int(round(t * 16000))
        ref = np.zeros(32000, np.float32)
        ref[: len(whole[s:s + 32000])] = whole[s:s + 32000]
        # same samples without resampling; with it, chunk-wise and whole-file sinc resampling agree to float32
        # rounding of the filter sums (kernel of ~ 2 * 6 taps per output sample)
        np.testing.assert_allclose(w, ref, atol=0 if file_rate == 16000 else 1e-5)


def test_events_threshold_merge_and_min_duration():
    starts = np.arange(10.0)
    scores = np.array([0, 0.9, 0.8, 0, 0, 0.7, 0, 0, 0, 0.95])
    rule = EventRule(threshold=0.5)
    assert class_events(starts, scores, 2.0, rule, duration_s=10.5) == [(1.0, 4.0, 0.9), (5.0, 7.0, 0.7),
                                                                       (9.0, 10.5, 0.95)]
    merged = class_events(starts, scores, 2.0, EventRule(0.5, merge_gap_s=1.0), duration_s=10.5)
    assert merged == [(1.0, 7.0, 0.9), (9.0, 10.5, 0.95)]
    assert class_events(starts, scores, 2.0, EventRule(0.5, min_duration_s=2.5)) == [(1.0, 4.0, 0.9)]


def test_matching_is_one_to_one_and_ap():
    truth = [(0.0, 2.0), (3.0, 5.0)]
    assert match_events([(0.0, 5.0, 0.9)], truth) == (1, 0, 1)  # one prediction spans both: finds one
    assert match_events([(0.5, 1.8, 0.9), (0.0, 2.0, 0.5)], truth) == (1, 1, 1)  # two on one call: one is a FP
    assert match_events([(1.5, 2.5, 0.9)], truth) == (0, 1, 2)  # covers 25% < 50% of the call
    assert average_precision([1.0, 0.5], [0.5, 1.0]) == pytest.approx(0.75)
    assert average_precision([0.2, 1.0], [1.0, 0.5]) == pytest.approx(0.6)  # envelope: max precision at r' >= r


def test_selection_tables_round_trip_through_the_raven_reader(tmp_path):
    audio = tmp_path / "rec7.wav"
    sf.write(audio, np.zeros(16000 * 30, np.float32), 16000)
    events = [("duet", 1.25, 6.5, 0.91), ("long.argus", 10.0, 15.0, 0.6)]
    write_selections(tmp_path / "rec7.selections.txt", events, audio, 8000.0)
    table = load_raven(tmp_path / "rec7.selections.txt")
    assert [(r.label, r.start_s, r.end_s, r.path) for r in table] == [(lab, a, b, str(audio)) for lab, a, b, _ in
                                                                       events]
    assert [r.meta["Score"] for r in table] == ["0.910000", "0.600000"]
    assert read_truth(tmp_path) == {"rec7": [(lab, a, b) for lab, a, b, _ in events]}


def test_mfcc_run_detects_calls_in_a_long_recording(tmp_path):
    from reprogram.data.synthetic import SyntheticConfig, ensure_corpus
    from reprogram.detect import detect
    from reprogram.experiment.config import load_config
    from reprogram.experiment.runner import run_experiment

    cfg = load_config(None, {"data.path": "synthetic", "task.label_column": "call_type",
                             "task.group_column": "recorder", "method.name": "mfcc", "backbone.name": "none"})
    result = run_experiment(cfg, tmp_path / "res", progress=False)
    run = tmp_path / "res" / "runs" / result["run_id"]
    assert (run / "classifier.safetensors").is_file()
    manifest = ensure_corpus(SyntheticConfig())
    rows = [r for r in csv.DictReader(open(manifest)) if r["recorder"] == "R1"]
    noise, calls = [r for r in rows if r["call_type"] == "noise"], [r for r in rows if r["call_type"] != "noise"]
    parts, lines, t = [], ["Selection\tBegin Time (s)\tEnd Time (s)\tAnnotation"], 0.0
    for i in range(18):  # noise, call, noise, noise, call, ...
        r = calls[i // 3] if i % 3 == 1 else noise[i % len(noise)]
        w, sr = sf.read(manifest.parent / r["path"], dtype="float32")
        if r["call_type"] != "noise":
            lines.append(f"{len(lines)}\t{t + float(r['event_start_s'])}\t{t + float(r['event_end_s'])}\t"
                         f"{r['call_type']}")
        parts.append(w)
        t += len(w) / sr
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "rec1.flac", np.concatenate(parts), sr)
    (tmp_path / "bad.wav").write_text("not audio")
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "rec1.selections.txt").write_text("\n".join(lines) + "\n")
    report = detect(run, [tmp_path / "bad.wav", tmp_path / "audio"], tmp_path / "det", hop_s=1.0,
                    truth=tmp_path / "truth", progress=False)
    assert [p for p, _ in report.failures] == [str(tmp_path / "bad.wav")]  # named, and the other file is complete
    assert "cannot read audio file" in report.failures[0][1]
    assert (tmp_path / "det" / "rec1.selections.txt").is_file() and (tmp_path / "det" / "pr_curve.png").is_file()
    assert len(load_raven(tmp_path / "det" / "rec1.selections.txt")) == len(report.events) > 0
    pooled = report.evaluation["at_threshold"]["pooled"]["overall"]
    assert pooled["tp"] + pooled["fn"] == len(lines) - 1  # every annotation is counted once
    # these clips were in training, so this checks the plumbing, not generalisation: most calls are found
    assert pooled["recall"] >= 0.5
    from reprogram.experiment.results import read_results

    (row,) = read_results(tmp_path / "det")
    assert row["task"] == "detection" and set(row["metrics"]["detection"]) >= {"precision", "recall", "f1", "ap"}
