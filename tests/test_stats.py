"""Statistics on known inputs: bootstrap intervals, paired bootstrap and Wilcoxon comparisons."""

from __future__ import annotations

import numpy as np
import pytest

from reprogram.stats import bootstrap_ci, compare_to_reference, paired_comparison, summarize


def test_bootstrap_ci_known_values_and_determinism():
    x = np.arange(10.0)
    ci = bootstrap_ci(x, seed=0)
    assert ci["mean"] == 4.5 and ci["n"] == 10
    se = x.std() / np.sqrt(len(x))  # normal-theory interval 4.5 +- 1.96 se = [2.72, 6.28]
    assert ci["lo"] == pytest.approx(4.5 - 1.96 * se, abs=0.35) and ci["hi"] == pytest.approx(4.5 + 1.96 * se, abs=0.35)
    assert bootstrap_ci(x, seed=0) == ci
    const = bootstrap_ci([0.7, 0.7, 0.7])
    assert const["lo"] == const["hi"] == 0.7 and const["mean"] == pytest.approx(0.7) and const["n"] == 3
    one = bootstrap_ci([0.4])
    assert one["mean"] == 0.4 and one["lo"] is None and one["hi"] is None
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_ci([])


def test_paired_comparison_known_cases():
    units = [(s, f) for s in range(2) for f in range(3)]
    b = {u: 0.5 + 0.05 * i for i, u in enumerate(units)}
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
    partial = paired_comparison({units[0]: 1.0, (9, 9): 0.0}, b)  # pairs only on shared units
    assert partial["n"] == 1 and partial["p_wilcoxon"] is None
    with pytest.raises(ValueError, match="share no"):
        paired_comparison({(7, 7): 1.0}, b)


def _rows(method, values, variant=""):
    return [{"method": method, "variant": variant, "budget": None, "backbone": "b", "modality": "speech",
             "task": "t", "seed": s, "fold": f, "split": "test", "metric": "balanced_accuracy", "value": v,
             "trainable_params": 10} for (s, f), v in values.items()]


def test_summarize_and_compare_to_reference():
    units = {(s, f): 0.6 + 0.01 * (s + f) for s in range(3) for f in range(2)}
    rows = _rows("mfcc", units) + _rows("lora", {u: v + 0.2 for u, v in units.items()})
    summary = {s["method"]: s for s in summarize(rows)}
    assert summary["lora"]["mean"] == pytest.approx(summary["mfcc"]["mean"] + 0.2) and summary["lora"]["n"] == 6
    (cmp,) = compare_to_reference(rows, {"method": "mfcc"})
    assert cmp["method"] == "lora" and cmp["mean_diff"] == pytest.approx(0.2) and cmp["wins"] == 6
    with pytest.raises(ValueError, match="matches 0 systems"):
        compare_to_reference(rows, {"method": "nope"})
    with pytest.raises(ValueError, match="two results"):
        compare_to_reference(rows + _rows("lora", units), {"method": "mfcc"})
    with pytest.raises(ValueError, match="no result rows"):
        summarize(rows, metric="roc_auc")
