"""Writing an evaluation: ``evaluation.json``, the PR figure, and a ``result.json`` row (split ``detection``)
whose metrics are scalars, so ``reprogram figures`` tables and sweeps include detection."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from reprogram.detect.evaluate import evaluate
from reprogram.detect.events import EventRule
from reprogram.detect.tables import read_truth


def write_evaluation(out: Path, scored: dict, truth_path, targets: list[str], rule: EventRule, min_cover: float,
                     summary: dict) -> dict:
    """Evaluate ``scored`` against the tables at ``truth_path`` and write the evaluation files into ``out``."""
    from figures.detection import pr_figure
    from reprogram.experiment.results import environment, read_result, utc_now, write_result

    truth = read_truth(truth_path)
    evaluation = evaluate(scored, truth, targets, rule, min_cover)
    (out / "evaluation.json").write_text(json.dumps(evaluation, indent=1))
    pr_figure(evaluation, out, "pr_curve", title=f"{summary['detector']['method']} "
                                               f"({summary['detector']['backbone'] or 'no backbone'})")
    source = read_result(Path(summary["detector"]["run_dir"]) / "result.json")
    pooled = evaluation["at_threshold"]["pooled"]
    metrics = {"precision": pooled["overall"]["precision"], "recall": pooled["overall"]["recall"],
               "f1": pooled["overall"]["f1"], "ap": evaluation["ap"]["pooled"]["overall"],
               "mean_ap": evaluation["ap"]["pooled"]["mean"], "real_time_factor": summary["real_time_factor"]}
    for c in targets:
        metrics[f"f1[{c}]"] = pooled["classes"][c]["f1"]
        metrics[f"ap[{c}]"] = evaluation["ap"]["pooled"][c]
    key = json.dumps({"run": source["run_id"], "recordings": sorted(scored), "rule": evaluation["rule"],
                      "hop": summary["hop_s"], "min_cover": min_cover, "truth": str(truth_path)}, sort_keys=True)
    rid = f"detect-{source['run_id']}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"
    result = {**{k: source[k] for k in ("config", "method", "backbone", "modality", "seed", "fold", "params",
                                         "classes", "sample_rate")},
              "schema": source["schema"], "run_id": rid, "task": "detection", "metrics": {"detection": metrics},
              "detection": {"source_run": source["run_id"], "hop_s": summary["hop_s"], "batch": summary["batch"],
                            "window_s": summary["detector"]["window_s"], "rule": evaluation["rule"],
                            "min_cover": min_cover, "recordings": sorted(scored), "truth": str(truth_path)},
              "wall_time_s": summary["compute_s"], "peak_memory_mb": None, "environment": environment(),
              "created": utc_now()}
    write_result(out, result)
    return evaluation
