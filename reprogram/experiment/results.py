"""One result file per run, with provenance; reading a results folder into tidy rows.

Layout: ``DIR/runs/<run id>/result.json`` (written atomically: temporary file + ``os.replace``), next
to the run's ``config.yaml``, ``trainable.safetensors`` (the selected trainable parameters) and its
``checkpoint/`` folder. Figures and tables read these files only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
#: keys every result file must have (checked when reading)
REQUIRED_KEYS = (
    "schema",
    "run_id",
    "config",
    "method",
    "backbone",
    "modality",
    "task",
    "seed",
    "fold",
    "params",
    "metrics",
    "wall_time_s",
    "peak_memory_mb",
    "environment",
)
PACKAGES = (
    "torch",
    "torchaudio",
    "torchvision",
    "transformers",
    "peft",
    "timm",
    "open_clip_torch",
    "numpy",
    "scipy",
    "scikit-learn",
    "safetensors",
    "gibbon-reprogram",
)


#: config keys left out of a run's ``setting``: the seed and fold (the units statistics run over), the fields
#: already in the system columns (method name, budget, options = ``variant``; backbone name), and what cannot
#: change a result (run name, output options, device placement, data-loader workers)
SETTING_EXCLUDED = (
    "name",
    "seed",
    "split.fold",
    "method.name",
    "method.budget",
    "method.options",
    "backbone.name",
    "output",
    "training.device",
    "training.num_workers",
)
#: config keys that decide which clips a run's val/test parts hold (with ``split.fold``)
EVAL_SET_KEYS = ("data.path", "data.synthetic", "task.label_column", "task.group_column", "split")


class CorruptResultError(ValueError):
    """A result file exists but cannot be read; it is reported, never overwritten or skipped."""


def run_dir(out_dir: str | Path, run_id: str) -> Path:
    """``DIR/runs/<run id>``."""
    return Path(out_dir) / "runs" / run_id


def result_path(out_dir: str | Path, run_id: str) -> Path:
    """``DIR/runs/<run id>/result.json``."""
    return run_dir(out_dir, run_id) / RESULT_FILE


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_result(out_dir: str | Path, result: dict) -> Path:
    """Atomically write ``result`` to ``DIR/runs/<result['run_id']>/result.json`` and return the path."""
    missing = [k for k in REQUIRED_KEYS if k not in result]
    assert not missing, f"result is missing {missing}"
    path = result_path(out_dir, result["run_id"])
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=False, allow_nan=False))
    return path


def read_result(path: str | Path) -> dict:
    """Read one result file; a file that is not valid JSON or lacks keys raises :class:`CorruptResultError`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptResultError(
            f"result file {path} is corrupt ({type(e).__name__}: {e}); inspect it, then delete it to recompute the run"
        ) from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(data, dict) or k not in data]
    if missing:
        raise CorruptResultError(
            f"result file {path} lacks {missing}; it was not written by this toolkit's schema {SCHEMA_VERSION}. "
            "Inspect it, then delete it to recompute the run"
        )
    return data


def existing_result(out_dir: str | Path, run_id: str) -> dict | None:
    """The completed result of ``run_id`` in ``out_dir``, ``None`` when absent; raises when corrupt."""
    path = result_path(out_dir, run_id)
    return read_result(path) if path.exists() else None


def result_files(out_dir: str | Path) -> list[Path]:
    """Every ``runs/*/result.json`` below ``out_dir`` (sorted)."""
    root = Path(out_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder {root} does not exist; pass the --out folder of a run or sweep")
    return sorted(root.glob(f"runs/*/{RESULT_FILE}"))


def read_results(out_dir: str | Path) -> list[dict]:
    """Every result below ``out_dir``; all corrupt files are named in one :class:`CorruptResultError`."""
    results, problems = [], []
    for path in result_files(out_dir):
        try:
            results.append(read_result(path))
        except CorruptResultError as e:
            problems.append(str(e))
    if problems:
        raise CorruptResultError(f"{len(problems)} corrupt result file(s):\n  " + "\n  ".join(problems))
    return results


def tidy_rows(results: list[dict]) -> list[dict]:
    """One row per (run, split, scalar metric); per-class recalls appear as ``recall[<class>]``.

    Besides the result's own fields a row has ``setting`` (:func:`setting`: every other config value, so two
    runs of one system with different training, data or split settings are never pooled) and ``eval_set``
    (:func:`eval_set`: which clips the split holds, the unit two systems are paired on).
    """
    rows = []
    for r in results:
        base = {
            "run_id": r["run_id"],
            "name": r["config"].get("name"),
            "method": r["method"],
            "variant": variant(r["config"]["method"].get("options", {})),
            "setting": setting(r["config"], r.get("data_fingerprint")),
            "budget": r.get("budget"),
            "backbone": r["backbone"],
            "modality": r["modality"],
            "task": r["task"],
            "seed": r["seed"],
            "fold": r["fold"],
            "trainable_params": r["params"]["trainable"],
            "total_params": r["params"]["total"],
            "wall_time_s": r["wall_time_s"],
            **{f"tag.{k}": v for k, v in r["config"]["output"]["tags"].items()},
        }
        for split, values in r["metrics"].items():
            base["eval_set"] = eval_set(r["config"], split, r.get("data_fingerprint"))
            for metric, value in values.items():
                if metric == "per_class_recall":
                    for cls, rec in value.items():
                        rows.append({**base, "split": split, "metric": f"recall[{cls}]", "value": rec})
                elif isinstance(value, (int, float)) or value is None:
                    rows.append({**base, "split": split, "metric": metric, "value": value})
    return rows


def split_predictions(results: list[dict], split: str) -> dict[str, dict]:
    """Per-clip predictions of ``split`` for every run that stored them (``output.predictions``).

    Returns:
        run id -> ``{"target": (M,) int array, "scores": (M, K) array, "positive": index of the detection
        task's positive class or None, "ids": M clip identifiers or None}``. ``ids`` is read from the result's
        ``predictions[split]["ids"]`` when the runner stored them; without them clips are matched by position.
    """
    import numpy as np

    out = {}
    for r in results:
        stored = (r.get("predictions") or {}).get(split)
        if not stored or "target" not in stored or "scores" not in stored:
            continue
        positive = None
        if r.get("detection"):
            label = r["config"]["task"].get("positive_label")
            positive = r["classes"].index(label) if label in r.get("classes", []) else None
        out[r["run_id"]] = {
            "target": np.asarray(stored["target"], dtype=int),
            "scores": np.asarray(stored["scores"], dtype=float),
            "positive": positive,
            "ids": stored.get("ids"),
        }
    return out


def variant(options: dict) -> str:
    """A short, stable description of a method's options (``"mapper=flm,transform=pad"``; ``""`` when none)."""
    parts = []
    for key in sorted(options):
        value = options[key]
        text = json.dumps(value, sort_keys=True, separators=(",", ":")) if isinstance(value, (dict, list)) else value
        parts.append(f"{key}={text}")
    return ",".join(parts)


def _short_hash(data: object) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]


def setting(config: dict, fingerprint: dict | None = None) -> str:
    """Short hash of a run's resolved config minus :data:`SETTING_EXCLUDED` (seed, fold and the system's fields).

    Runs of one system (method, variant, budget, backbone) share a setting exactly when every other config
    value (training, data path, split kind and seed, clip length, backbone options ...) is equal, and, when the
    runner recorded it (``result["data_fingerprint"]``), the data's contents too.

    Args:
        config: the run's resolved config (``result["config"]``).
        fingerprint: the result's ``data_fingerprint`` (``{"data": digest, "external": digest}``) or ``None``.
    """
    rest = copy.deepcopy(config)
    for key in SETTING_EXCLUDED:
        *parents, leaf = key.split(".")
        node = rest
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return _short_hash(rest if fingerprint is None else [rest, fingerprint])


def eval_set(config: dict, split: str, fingerprint: dict | None = None) -> str:
    """Short hash naming the clips of ``split``: the data, task and split settings (fold included) for
    train/val/test; the external table alone for ``external`` (every fold and seed is scored on its clips).
    With the result's ``data_fingerprint`` the data's contents are part of it."""
    def get(key: str) -> object:
        node: object = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    fingerprint = fingerprint or {}
    if split == "external":
        return _short_hash(["external", get("data.test_path"), get("task.label_column"), fingerprint.get("external")])
    return _short_hash([split, *(get(k) for k in EVAL_SET_KEYS), fingerprint.get("data")])


# --------------------------------------------------------------------------------------------------
# provenance


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the stack (``None`` where a package is not installed), plus Python's."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_commit(path: str | Path | None = None) -> str:
    """The commit of the repository holding this package (``+dirty`` if modified), or ``"unknown"``."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


def environment() -> dict[str, Any]:
    """Package versions, git commit, platform and command line of this process."""
    return {
        "packages": package_versions(),
        "git_commit": git_commit(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "argv": list(sys.argv),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024**2 if sys.platform == "darwin" else 1024)


@contextmanager
def measure(device: str = "cpu") -> Iterator[dict]:
    """Measure wall time and peak memory of a block; fills the yielded dict on exit.

    Keys: ``wall_time_s``; ``peak_memory_mb`` = ``{"rss": process peak RSS (lifetime maximum of the
    process, so it includes whatever ran before in it), "cuda": torch.cuda.max_memory_allocated during
    the block or None}``.
    """
    cuda = device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    info: dict = {}
    start = time.perf_counter()
    try:
        yield info
    finally:
        info["wall_time_s"] = time.perf_counter() - start
        cuda_mb = None
        if cuda:
            import torch

            cuda_mb = torch.cuda.max_memory_allocated(device) / 1024**2
        info["peak_memory_mb"] = {"rss": peak_rss_mb(), "cuda": cuda_mb}


def utc_now() -> str:
    """The current time, ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
