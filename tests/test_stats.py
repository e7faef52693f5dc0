"""Statistics on known inputs: intervals over independent units (folds, seeds averaged), clip-level bootstrap,
paired tests, duplicate results refused."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from reprogram.experiment.clip_bootstrap import clip_metric, resample_weights
from reprogram.experiment.metrics import classification_metrics
from reprogram.experiment.stats import bootstrap_ci, compare_to_reference, paired_comparison, summarize


def test_bootstrap_ci_known_values_and_too_few_units():
    x = np.arange(10.0)
    ci = bootstrap_ci(x, seed=0)
    assert ci["mean"] == 4.5 and ci["n"] == 10
    se = x.std() / np.sqrt(len(x))  # normal-theory interval 4.5 +- 1.96 se = [2.72, 6.28]
    assert ci["lo"] == pytest.approx(4.5 - 1.96 * se, abs=0.35) and ci["hi"] == pytest.approx(4.5 + 1.96 * se, abs=0.35)
    assert bootstrap_ci(x, seed=0) == ci
    const = bootstrap_ci([0.7] * 5)
    assert const["lo"] == const["hi"] == 0.7 and const["mean"] == pytest.approx(0.7) and const["n"] == 5
    two = bootstrap_ci([0.6, 0.7])  # a "95%" interval of two numbers would be their min and max
    assert two["mean"] == pytest.approx(0.65) and two["lo"] is None and two["hi"] is None
    assert bootstrap_ci([0.6, 0.7, 0.8, 0.65])["lo"] is None
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])


def test_paired_comparison_known_cases():
    units = list(range(6))
    b = {u: 0.5 + 0.05 * u for u in units}
    better = paired_comparison({u: v + 0.1 for u, v in b.items()}, b, seed=1)
    assert better["n"] == 6 and better["mean_diff"] == pytest.approx(0.1)
    assert better["wins"] == 6 and better["losses"] == 0
    assert better["p_wilcoxon"] == pytest.approx(2 / 2**6)  # exact two-sided signed-rank p, all 6 positive
    assert better["p_bootstrap"] == 0.0 and better["lo"] == pytest.approx(0.1)
    same = paired_comparison(b, b)
    assert same["mean_diff"] == 0 and same["ties"] == 6 and same["p_wilcoxon"] == 1.0 and same["p_bootstrap"] == 1.0
    noisy = {u: v + d for (u, v), d in zip(b.items(), [0.1, -0.1, 0.05, -0.05, 0.02, -0.02], strict=True)}
    mixed = paired_comparison(noisy, b, seed=3)
    assert mixed["mean_diff"] == pytest.approx(0.0, abs=1e-12) and mixed["p_wilcoxon"] > 0.5
    assert mixed["p_bootstrap"] > 0.5 and mixed["lo"] < 0 < mixed["hi"]
    assert paired_comparison(noisy, b, seed=3) == mixed
    few = paired_comparison({u: b[u] + 0.1 for u in units[:3]}, b)  # 3 shared units: no test
    assert few["n"] == 3 and few["p_wilcoxon"] is None and few["p_bootstrap"] is None and few["lo"] is None
    with pytest.raises(ValueError, match="share no"):
        paired_comparison({77: 1.0}, b)


def _rows(method, values, setting="s0", run=""):
    """values: (seed, fold) -> value; the unit is the fold's test set."""
    return [{"run_id": f"{method}{run}-{s}-{f}", "method": method, "variant": "", "budget": None, "backbone": "b",
             "modality": "speech", "setting": setting, "task": "t", "seed": s, "fold": f, "eval_set": f"fold{f}",
             "split": "test", "metric": "balanced_accuracy", "value": v, "trainable_params": 10}
            for (s, f), v in values.items()]


def test_seeds_on_one_fold_are_averaged_not_counted():
    """A deterministic method repeats one value over seeds: its interval is over the 5 fold means, not 20 values."""
    folds = [0.55, 0.62, 0.70, 0.58, 0.66]
    rows = _rows("mfcc", {(s, f): folds[f] for s in range(4) for f in range(5)})
    (s,) = summarize(rows)
    ref = bootstrap_ci(folds, seed=0)
    assert s["n_units"] == 5 and s["n_runs"] == 20 and s["ci"] == "units"
    assert (s["mean"], s["lo"], s["hi"]) == pytest.approx((ref["mean"], ref["lo"], ref["hi"]))
    noisy = _rows("lora", {(sd, f): folds[f] + 0.02 + 0.01 * (sd - 1.5) for sd in range(4) for f in range(5)})
    (cmp,) = compare_to_reference(rows + noisy, {"method": "mfcc"})
    assert cmp["n_units"] == 5 and cmp["mean_diff"] == pytest.approx(0.02)
    assert cmp["p_wilcoxon"] == pytest.approx(2 / 2**5)  # 5 independent folds, not 20 seed x fold "units"
    (few,) = summarize(_rows("mfcc", {(s, f): folds[f] for s in range(3) for f in range(2)}))
    assert few["n_units"] == 2 and few["lo"] is None and few["ci"] is None  # n/a: no predictions, < 5 units


def test_settings_are_separate_systems_and_duplicates_raise():
    units = {(s, f): 0.6 + 0.01 * (s + f) for s in range(2) for f in range(5)}
    rows = _rows("lora", units, "lrA") + _rows("lora", {u: v + 0.2 for u, v in units.items()}, "lrB")
    summary = {s["setting"]: s for s in summarize(rows)}
    assert summary["lrB"]["mean"] == pytest.approx(summary["lrA"]["mean"] + 0.2) and summary["lrA"]["n_units"] == 5
    twice = rows + _rows("lora", units, "lrA", run="again")
    for call in (lambda: summarize(twice), lambda: compare_to_reference(twice, {"setting": "lrB"})):
        with pytest.raises(ValueError, match=r"two results.*lora-0-0 and loraagain-0-0.*--runs-file"):
            call()
    (cmp,) = compare_to_reference(rows, {"setting": "lrA"})
    assert cmp["setting"] == "lrB" and cmp["mean_diff"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="matches 2 systems"):
        compare_to_reference(rows, {"method": "lora"})
    with pytest.raises(ValueError, match="no result rows"):
        summarize(rows, metric="roc_auc")


def _expand(target, scores, counts):
    idx = np.repeat(np.arange(len(target)), counts.astype(int))
    return target[idx], scores[idx]


def test_clip_metrics_match_the_metric_definitions():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 3, 40)
    scores = rng.normal(size=(40, 3)) + 1.5 * np.eye(3)[target]
    weights = resample_weights(40, 6, rng)
    classes = ["a", "b", "c"]
    for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        values = clip_metric(metric, target, scores, weights)
        for w, v in zip(weights, values, strict=True):
            assert v == pytest.approx(classification_metrics(*_expand(target, scores, w), classes)[metric])
    binary = (target == 1).astype(int)
    two = np.c_[-scores[:, 1], scores[:, 1]]
    for metric, fn in (("roc_auc", skm.roc_auc_score), ("average_precision", skm.average_precision_score)):
        values = clip_metric(metric, binary, np.round(two, 1), weights, positive=1)  # rounding makes ties
        for w, v in zip(weights, values, strict=True):
            p = np.exp(np.round(two, 1))[:, 1] / np.exp(np.round(two, 1)).sum(1)
            assert v == pytest.approx(fn(binary, p, sample_weight=w))


def test_single_split_uses_a_clip_level_bootstrap():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, 120)
    preds, rows = {}, []
    for method, acc in (("mfcc", 0.7), ("lora", 0.85)):
        for seed in range(3):
            right = rng.random(120) < acc
            pred = np.where(right, target, 1 - target)
            run = f"{method}-{seed}"
            preds[run] = {"target": target, "scores": np.eye(2)[pred], "positive": None, "ids": None}
            value = classification_metrics(target, np.eye(2)[pred], ["x", "y"])["balanced_accuracy"]
            rows += [{**r, "run_id": run} for r in _rows(method, {(seed, 0): value})]
    summary = {s["method"]: s for s in summarize(rows, predictions=preds)}
    for s in summary.values():
        assert s["n_units"] == 1 and s["ci"] == "clips" and s["lo"] < s["mean"] < s["hi"]
        assert 0.03 < s["hi"] - s["lo"] < 0.2  # ~ 4 binomial standard errors of 120 clips
    assert summarize(rows)[0]["lo"] is None  # without predictions: n/a
    (cmp,) = compare_to_reference(rows, {"method": "mfcc"}, predictions=preds)
    assert cmp["ci"] == "clips" and cmp["mean_diff"] == pytest.approx(summary["lora"]["mean"] - summary["mfcc"]["mean"])
    assert cmp["lo"] > 0 and cmp["p_bootstrap"] < 0.01 and cmp["p_wilcoxon"] is None
    moved = {k: {**v, "target": 1 - v["target"]} if k.startswith("lora") else v for k, v in preds.items()}
    with pytest.raises(ValueError, match="not scored on the same clips"):
        compare_to_reference(rows, {"method": "mfcc"}, predictions=moved)
