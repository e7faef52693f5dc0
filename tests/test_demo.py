"""``reprogram demo`` end to end in tiny mode: every run, the summary table and every figure written; a re-run
reuses every completed run."""

from __future__ import annotations

import json

from reprogram.experiment import demo
from reprogram.experiment.results import read_results

TINY = ["--tiny", "--seeds", "1", "--jobs", "0"]


def test_demo_tiny_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert demo.main([*TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "summary.md" in printed

    results = read_results(out)
    assert len(results) == len(demo.SYSTEMS)
    assert {r["method"] for r in results} == {"program", "lora", "prompt", "linear_probe", "image_probe", "mfcc"}
    assert {r["modality"] for r in results} == {"image", "video", "speech", "features"}
    assert {r["backbone"] for r in results} == {"tiny:vit", "tiny:r3d", "tiny:whisper", None}
    for r in results:
        assert r["task"] == "call_type" and r["seed"] == 0
        assert set(r["split"]["groups"]) == {"train", "val", "test"}  # recorder-grouped
        assert 0.0 <= r["metrics"]["test"]["balanced_accuracy"] <= 1.0
        assert r["params"]["trainable"] > 0
    mappers = {r["config"]["method"]["options"].get("mapper") for r in results if r["method"] == "program"}
    assert mappers == {"flm", "linear", "feature_linear"}

    summary = (out / "summary.md").read_text()
    assert "wall time of this invocation" in summary
    table, protocol = summary.split("## What the data support")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "method" not in line]
    assert len(rows) == len(demo.SYSTEMS)  # one row per system: mean [CI], trainable parameters, paired Δ
    assert any("(ref)" in row and "mfcc" in row for row in rows)
    # the protocol section: which differences the data support, per-recorder table and rank stability
    assert "the data support a difference from mfcc" in protocol and "### Per recorder: test part" in protocol
    recorder_rows = [line for line in protocol.splitlines() if line.startswith("| ") and "system" not in line]
    assert len(recorder_rows) == len(demo.SYSTEMS) and "Rank stability over 1 recorders" in protocol

    figures = out / "figures"
    written = sorted(p.name for p in figures.iterdir())
    for stem in ("accuracy_vs_params_call_type", "confusion_call_type_test"):
        assert f"{stem}.pdf" in written and f"{stem}.png" in written
    assert sum(name.startswith("program_") for name in written) == 2 * 5  # 5 programs, PDF + PNG
    assert sum(name.startswith("label_mapping_") for name in written) == 2 * 4  # FLM and linear source maps
    assert {"results.md", "results.tex"} <= set(written)
    for path in figures.iterdir():
        assert path.stat().st_size > 0, path

    # re-running reuses every completed run (nothing retrained) and rewrites the summary
    before = {r["run_id"]: json.dumps(r, sort_keys=True) for r in results}
    assert demo.main([*TINY, "--out", str(out), "--no-figures"]) == 0
    assert f"runs: {len(demo.SYSTEMS)} ({len(demo.SYSTEMS)} reused, 0 run now, 0 failed)" in (
        out / "summary.md"
    ).read_text()
    assert {r["run_id"]: json.dumps(r, sort_keys=True) for r in read_results(out)} == before
