"""benchmarks/throughput.py (issue 7a) and benchmarks/scaling.py (issue 7e) run end to end with --tiny: every
method gives a row of positive finite numbers and the JSON file holds the printed rows. No timing assertions."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restore_threads():
    """The scripts pin cores (--threads) and set torch's thread count: give the rest of the session its own back."""
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    threads = torch.get_num_threads()
    yield
    if affinity is not None:
        os.sched_setaffinity(0, affinity)
    torch.set_num_threads(threads)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


TINY = ["--tiny", "--threads", "1", "--repeats", "1"]


def test_throughput_rows_for_every_method(tmp_path, restore_threads):
    throughput = _load("throughput")
    out = tmp_path / "throughput.json"
    rows = throughput.main([*TINY, "--synthetic", "--json", str(out)])
    assert [r["method"] for r in rows] == list(throughput.METHODS)
    for r in rows:
        assert all(_positive(r[k]) for k in ("method_clips_per_s", "bare_clips_per_s", "ratio")), r
        assert r["ratio"] == pytest.approx(r["method_clips_per_s"] / r["bare_clips_per_s"])
        assert r["backbone"].startswith("tiny:") and r["data"].startswith("synthetic")
        sections = r["sections_s"]
        assert set(sections) == {*throughput.SECTIONS, "step"}
        assert all(math.isfinite(v) and v >= 0 for v in sections.values())
        # the sections partition the step (each timed boundary once)
        assert sum(sections[k] for k in throughput.SECTIONS) == pytest.approx(sections["step"], rel=1e-6)
        assert sections["backbone"] > 0 and sections["backward"] > 0 and sections["optimizer"] > 0
        assert r["bare_input_shape"][0] == r["batch"] == 4
    by_name = {r["method"]: r for r in rows}
    assert by_name["lora_qv_r8"]["bare_grad_to"] == "adapted parameters"
    assert by_name["pad_linear"]["bare_grad_to"] == "input"
    assert len(by_name["pad_linear"]["bare_input_shape"]) == 4  # images (B, 3, H, W)
    assert len(by_name["video_program"]["bare_input_shape"]) == 5  # frames (B, 3, T, H, W)
    assert by_name["wave_program"]["sections_s"]["transform"] > 0  # the waveform program runs outside the backbone
    assert by_name["lora_qv_r8"]["sections_s"]["frontend"] > 0  # Whisper's log-mel, inside the backbone
    # as in the runner, prompt tuning trains on cached activations above the frozen stem: no front end per step
    assert by_name["prompt_p8"]["prefix_cache"]["used"] and by_name["prompt_p8"]["sections_s"]["frontend"] == 0
    assert not by_name["lora_qv_r8"]["prefix_cache"]["used"] and not by_name["pad_linear"]["prefix_cache"]["used"]
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))


def test_throughput_without_prefix_cache(restore_threads):
    (row,) = _load("throughput").main([*TINY, "--synthetic", "--methods", "prompt_p8", "--no-prefix-cache"])
    assert not row["prefix_cache"]["used"] and row["sections_s"]["frontend"] > 0 and _positive(row["ratio"])


def test_throughput_on_danum_gibbon(danum_dir, tmp_path, restore_threads):
    rows = _load("throughput").main([*TINY, "--methods", "lora_qv_r8", "--data-dir", str(danum_dir.parent),
                                     "--cache-dir", str(tmp_path / "cache")])
    assert rows[0]["data"].startswith("danum-gibbon") and _positive(rows[0]["ratio"])
    assert any((tmp_path / "cache").iterdir())  # the runner's waveform cache went where it was told


def test_scaling_rows_fit_and_budgets(tmp_path, restore_threads):
    scaling = _load("scaling")
    out = tmp_path / "scaling.json"
    rows = scaling.main([*TINY, "--synthetic", "--sizes", "4,8", "--json", str(out)])
    for method in scaling.DEFAULT_METHODS:
        clips = [r for r in rows if r["method"] == method and r["kind"] == "clips"]
        assert [r["clips"] for r in clips] == [4, 8]
        assert all(_positive(r["epoch_s"]) and _positive(r["s_per_clip"]) for r in clips)
        (fit,) = [r for r in rows if r["method"] == method and r["kind"] == "clips_fit"]
        assert math.isfinite(fit["slope_s_per_clip"]) and math.isfinite(fit["intercept_s"])  # sign: timing
        budgets = [r for r in rows if r["method"] == method and r["kind"] == "budget"]
        assert [r["budget"] for r in budgets] == list(scaling.BUDGETS[method][1])
        assert budgets[0]["ratio_to_smallest"] == 1.0 and all(_positive(r["ratio_to_smallest"]) for r in budgets)
        assert budgets[0]["trainable"] < budgets[-1]["trainable"]  # the budget knob really changed the method
        assert all(r["prefix_cache"]["used"] == (method == "prompt_p8") for r in clips + budgets)
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))


def test_unknown_method_is_refused(restore_threads):
    with pytest.raises(SystemExit, match="unknown.*choose from"):
        _load("throughput").main(["--tiny", "--methods", "lora_r8"])


def test_prefix_cache_benchmark_rows(tmp_path):
    """benchmarks/prefix_cache.py (issue 7d): every method's cached run used the prefix cache, scored the same
    test metric as the uncached run, and the FLOP share of the cached part is a proper fraction."""
    prefix = _load("prefix_cache")
    out = tmp_path / "prefix.json"
    result = prefix.main(["--synthetic", "--backbone", "tiny:whisper", "--batch", "8", "--epochs", "1",
                          "--methods", "prompt,lora_top1,weighted_probe", "--json", str(out)])
    rows = result["rows"]
    assert [r["method"] for r in rows] == ["prompt", "lora_top1", "weighted_probe"]
    points = [r["point"] for r in rows]
    assert points[0] == "layer_input_0" and points[1].startswith("layer_input_") and points[2] == "pooled_hidden_states"
    for r in rows:
        assert 0 < r["flop_share"] < 1 and r["lower_gflop"] <= r["step_gflop"], r
        assert _positive(r["epoch_uncached_s"]) and _positive(r["epoch_cached_s"])
        assert r["test_bacc"][0] == pytest.approx(r["test_bacc"][1], abs=1e-9), r  # same seed and model, same metric
    assert json.loads(out.read_text())["rows"] == rows


def test_throughput_device_and_real_loop_epoch(restore_threads):
    """--device reaches the config, the step and the bare path; the real loop's epoch row covers every clip."""
    (row,) = _load("throughput").main([*TINY, "--synthetic", "--methods", "lora_qv_r8", "--device", "cpu",
                                       "--clips", "8"])
    assert row["device"] == "cpu"
    epoch = row["epoch"]
    assert epoch["clips"] == 8 and epoch["steps"] == 2 and all(_positive(epoch[k]) for k in ("train_s", "eval_s"))
    assert row["epoch_to_step"] == pytest.approx(epoch["clips_per_s"] / row["method_clips_per_s"])
    assert row["epoch_to_bare"] == pytest.approx(epoch["clips_per_s"] / row["bare_clips_per_s"])


def test_loader_benchmark_rows(tmp_path, restore_threads):
    out = tmp_path / "loader.json"
    rows = _load("loader").main(["--tiny", "--synthetic", "--workers", "0,1", "--json", str(out)])
    assert [r["workers"] for r in rows] == [0, 1] and all(_positive(r["clips_per_s"]) for r in rows)
    assert all(r["clips"] == 16 and not r["pinned"] for r in rows)  # memory is pinned only for CUDA
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))


def test_gpu_check_script_is_valid_bash():
    import subprocess

    script = BENCHMARKS / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "--device cuda" in text and "$OUT" in text and "pip install" not in text
