"""Per-recorder scores, intervals over recorders and rank stability on constructed results with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from reprogram.experiment.ranking import over_groups, per_group_scores, rank_agreement, rank_stability


def _result(run_id: str, method: str, seed: int, target, pred, groups, k: int = 2) -> dict:
    """A minimal result with stored test predictions (log-probabilities putting all mass on ``pred``)."""
    scores = np.full((len(pred), k), np.log(1e-12))
    scores[np.arange(len(pred)), pred] = 0.0
    return {
        "run_id": run_id, "method": method, "seed": seed, "fold": 0, "task": "call_type", "backbone": None,
        "modality": "none", "budget": None, "params": {"trainable": 1, "total": 1}, "wall_time_s": 1.0,
        "classes": ["a", "b"], "detection": False,
        "config": {"name": "x", "method": {"options": {}}, "task": {"group_column": "recorder"},
                   "output": {"tags": {}}, "data": {}, "split": {}},
        "metrics": {"test": {"balanced_accuracy": 0.0}},
        "predictions": {"test": {"target": list(target), "scores": scores.tolist(), "ids": None,
                                 "groups": {"recorder": list(groups)}}},
    }


def test_per_group_scores_split_clips_by_recorder_and_average_seeds():
    target = [0, 1, 0, 1]
    groups = ["R1", "R1", "R2", "R2"]
    # seed 0: right on R1, one of two wrong on R2 (balanced accuracy 0.5); seed 1: right everywhere
    rows = [_result("s0", "m", 0, target, [0, 1, 0, 0], groups), _result("s1", "m", 1, target, [0, 1, 0, 1], groups)]
    scores = per_group_scores(rows, system_of={"s0": ("m",), "s1": ("m",)})
    assert scores == {("m",): {"R1": 1.0, "R2": 0.75}}


def test_per_group_scores_reject_inconsistent_groups():
    bad = _result("s0", "m", 0, [0, 1], [0, 1], ["R1"])
    with pytest.raises(ValueError, match="group values"):
        per_group_scores([bad], system_of={"s0": ("m",)})


def test_over_groups_interval_needs_five_groups():
    few = over_groups({"R1": 0.6, "R2": 0.8})
    assert few["mean"] == pytest.approx(0.7) and few["lo"] is None and few["worst"] == 0.6 and few["best"] == 0.8
    many = over_groups({f"R{i}": v for i, v in enumerate([0.6, 0.7, 0.8, 0.9, 1.0])})
    assert many["mean"] == pytest.approx(0.8)
    assert 0.6 <= many["lo"] < 0.8 < many["hi"] <= 1.0


def test_rank_stability_perfect_and_reversed_orders():
    same = {"A": {"R1": 0.9, "R2": 0.8, "R3": 0.7}, "B": {"R1": 0.5, "R2": 0.4, "R3": 0.3},
            "C": {"R1": 0.1, "R2": 0.2, "R3": 0.0}}
    s = rank_stability(same)
    assert s["kendall"] == pytest.approx(1.0) and s["spearman"] == pytest.approx(1.0)
    assert s["best"] == "A" and s["best_share"] == 1.0 and s["n_groups"] == 3
    # two recorders ranking three systems in opposite orders: tau = rho = -1; A best on average and on R1 only
    flipped = {"A": {"R1": 0.9, "R2": 0.6}, "B": {"R1": 0.5, "R2": 0.7}, "C": {"R1": 0.1, "R2": 0.8}}
    f = rank_stability(flipped)
    assert f["kendall"] == pytest.approx(-1.0) and f["spearman"] == pytest.approx(-1.0)
    assert f["best"] == "A" and f["best_share"] == 0.5 and f["best_by_group"] == {"R1": ["A"], "R2": ["C"]}


def test_rank_stability_known_partial_agreement():
    # R1 orders A>B>C>D, R2 orders A>C>B>D: one discordant pair of six -> tau = (5-1)/6, rho = 1 - 6*2/(4*15)
    scores = {"A": {"R1": 4, "R2": 4}, "B": {"R1": 3, "R2": 2}, "C": {"R1": 2, "R2": 3}, "D": {"R1": 1, "R2": 1}}
    s = rank_stability(scores)
    assert s["kendall"] == pytest.approx(4 / 6) and s["spearman"] == pytest.approx(0.8)


def test_rank_stability_skips_constant_groups_and_uses_shared_groups_only():
    scores = {"A": {"R1": 0.5, "R2": 0.9, "R3": 0.2}, "B": {"R1": 0.5, "R2": 0.1}}
    s = rank_stability(scores)
    assert s["n_groups"] == 2 and s["kendall"] is None  # R1 ties every system: no order to compare
    assert s["best_by_group"]["R1"] == ["A", "B"]


def test_rank_agreement_between_internal_and_external():
    internal = {"A": 0.9, "B": 0.8, "C": 0.7, "D": 0.6}
    external = {"A": 0.6, "B": 0.7, "C": 0.8, "D": 0.9, "E": 0.5}
    a = rank_agreement(internal, external)
    assert a["n"] == 4 and a["spearman"] == pytest.approx(-1.0) and a["kendall"] == pytest.approx(-1.0)
    assert a["same_best"] is False
    assert rank_agreement(internal, dict(internal))["same_best"] is True


def test_recorder_section_and_supported_sentence():
    from figures.report import recorder_section, supported_sentence

    target, groups = [0, 1, 0, 1], ["R1", "R1", "R2", "R2"]
    rows = [_result("a", "lora", 0, target, [0, 1, 0, 1], groups),
            _result("b", "mfcc", 0, target, [0, 1, 0, 0], groups)]
    text = "\n".join(recorder_section(rows, "test"))
    assert "| R1 | R2 |" in text and "| lora | 1.00 | 1.00 | 1.00 [n/a] | 1.00 |" in text
    assert "| mfcc | 1.00 | 0.50 | 0.75 [n/a] | 0.50 |" in text and "best on 2 of 2 recorders" in text
    assert recorder_section(rows, "external") == []  # no external predictions stored
    base = {"variant": "", "setting": "s"}
    table = [{**base, "method": "mfcc", "reference": True, "delta": None},
             {**base, "method": "lora", "reference": False, "delta": 0.2, "delta_lo": 0.1, "delta_hi": 0.3},
             {**base, "method": "prompt", "reference": False, "delta": 0.05, "delta_lo": -0.02, "delta_hi": 0.1},
             {**base, "method": "ia3", "reference": False, "delta": 0.01, "delta_lo": None, "delta_hi": None}]
    sentence = supported_sentence(table)
    assert "for: lora (+0.20); they do not for: prompt (+0.05); no interval for: ia3 (+0.01)." in sentence
