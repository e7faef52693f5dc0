"""What a run's result depends on in its data, and the check that a completed run's data are unchanged."""

from __future__ import annotations

from reprogram.data.records import ClipTable
from reprogram.experiment.config import ExperimentConfig
from reprogram.experiment.results import run_dir


def data_fingerprint(table: ClipTable, external: ClipTable | None = None) -> dict[str, str]:
    """What a run's result depends on in its data: every file's identity and segment bounds
    (:func:`reprogram.runtime.cache.keys.table_identity`: path, size, mtime) plus a digest of the labels and groups.

    Returns:
        ``{"data": digest}`` (and ``"external": digest`` for an external test set).
    """
    from reprogram.runtime.cache.keys import table_identity
    from reprogram.runtime.cache.store import digest

    out = {}
    for name, t in (("data", table), ("external", external)):
        if t is not None:
            labels = [[r.label, sorted(r.groups.items())] for r in t]
            out[name] = digest({"audio": table_identity(t)["digest"], "labels": labels})
    return out


def check_unchanged(done: dict, fingerprint: dict, config: ExperimentConfig, out_dir) -> None:
    """A completed run is reused only when its data are the ones it measured."""
    stored = done.get("data_fingerprint")
    if stored is None or stored == fingerprint:
        return
    where = config.data.path or "synthetic"
    if stored.get("external") != fingerprint.get("external"):
        where = f"{where} or {config.data.test_path}"
    raise ValueError(
        f"the data at {where} changed (audio files, segments, labels or groups) since run {done['run_id']} "
        f"measured them; delete {run_dir(out_dir, done['run_id'])} to recompute it, or use another --out"
    )
