"""Per-recording start/end/type tables (the Hainan gibbon format: ``Start,End,Duration,Type,Notes``).

Each recording ``<name>.wav`` has a comma-separated table ``<name>.csv`` (or ``g_<name>.data``, as in the
Hainan gibbon release of Dufourq et al. 2021) with one row per call: start and end in seconds, the call
type, and free-text notes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from reprogram.data.manifest import RowPolicy, note_overlaps, parse_seconds, read_rows, require_columns
from reprogram.data.raven import AudioIndex, add_background
from reprogram.data.records import ClipRecord, ClipTable

HAINAN_COLUMNS: tuple[str, ...] = ("Start", "End", "Type")
TABLE_EXTENSIONS: tuple[str, ...] = (".csv", ".data")


def is_hainan_table(path: str | os.PathLike[str]) -> bool:
    """Whether a file's header has the ``Start``, ``End`` and ``Type`` columns."""
    try:
        header = read_rows(path, ",")[0]
    except (OSError, UnicodeDecodeError):
        return False
    return all(c in header for c in HAINAN_COLUMNS)


def _recording_names(table_path: str) -> list[str]:
    stem = Path(table_path).stem
    return [stem, stem[2:]] if stem.startswith("g_") else [stem]


def load_hainan(
    path: str | os.PathLike[str],
    *,
    label_column: str = "Type",
    group_columns: Sequence[str] = (),
    audio_dir: str | os.PathLike[str] | None = None,
    on_error: str = "error",
    background_windows: int = 0,
    background_label: str = "background",
    background_seconds: float | None = None,
    background_min_gap_s: float = 1.0,
    seed: int = 0,
) -> ClipTable:
    """Load one per-recording call table, or every one in a folder.

    Args:
        path: a table (``.csv``/``.data``) or a folder of them (tables are recognised by their header).
        label_column: column with the label (``Type`` in the Hainan release).
        group_columns: other columns to use as groups; ``recording`` (the audio stem) is always added.
        audio_dir: folder searched recursively for ``<recording>.<ext>`` (default: the tables' folder).
        on_error: ``"error"`` or ``"skip"`` (skipped rows listed in ``table.skipped``).
        background_windows: background windows to sample per recording (detection); 0 for none.
        background_label: label of the background windows.
        background_seconds: background window length (default: median call duration).
        background_min_gap_s: minimum distance between a background window and any call.
        seed: seed of the background sampling.

    Returns:
        Clip table; overlapping calls are listed in ``table.notes``.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        tables = [str(p) for p in sorted(Path(path).rglob("*"))
                  if p.suffix.lower() in TABLE_EXTENSIONS and is_hainan_table(p)]
        if not tables:
            raise FileNotFoundError(f"no Start/End/Type tables (.csv or .data) under {path}. "
                                    "Fix: pass the folder holding the per-recording tables.")
        folder = path
    elif os.path.isfile(path):
        tables, folder = [path], os.path.dirname(os.path.abspath(path))
    else:
        raise FileNotFoundError(f"Hainan-format table or folder not found: {path}. Fix: pass an existing path.")
    index = AudioIndex(audio_dir if audio_dir is not None else folder)
    policy = RowPolicy(on_error)
    group_columns = tuple(g for g in group_columns if g != "recording")  # "recording" is always added
    records: list[ClipRecord] = []
    recordings: list[tuple[str, str, dict[str, str]]] = []
    for table_path in tables:
        name = os.path.basename(table_path)
        header, rows = read_rows(table_path, ",")
        require_columns(table_path, header, {"label_column": label_column, "start": "Start", "end": "End"})
        for g in group_columns:
            require_columns(table_path, header, {"group_column": g})
        audio = next((a for a in map(index.find, _recording_names(table_path)) if a), None)
        if audio is None:
            for line in range(2, len(rows) + 2):
                policy.fail(f"{name}:{line}", f"no recording named {' or '.join(_recording_names(table_path))} "
                            f"under {index.folder}", "pass audio_dir= pointing at the recordings", missing_file=True)
            continue
        groups0 = {"recording": Path(audio).stem}
        for line, row in enumerate(rows, start=2):
            source = f"{name}:{line}"
            try:
                start, end = parse_seconds(row["Start"]), parse_seconds(row["End"])
            except ValueError as err:
                policy.fail(source, f"bad time ({err})", "write Start/End as seconds")
                continue
            if start is None or end is None or end <= start:
                policy.fail(source, f"call [{start}, {end}] s is empty", "correct Start/End")
                continue
            if not policy.check_cells(source, row, label_column, group_columns):
                continue
            label = row[label_column]
            if not policy.check_audio(source, audio, start, end):
                continue
            groups = {**groups0, **{g: row[g] for g in group_columns}}
            meta = {k: v for k, v in row.items() if k not in ("Start", "End", label_column, *group_columns)}
            records.append(ClipRecord(audio, label, groups, start, end, source, meta))
        first = next((r.groups for r in records if r.path == audio), None)
        recordings.append((audio, name, dict(first) if first else {**groups0, **{g: "" for g in group_columns}}))
    note_overlaps(records, policy)
    background = add_background(records, policy, recordings, background_windows, label=background_label,
                                window_s=background_seconds, min_gap_s=background_min_gap_s, seed=seed)
    table = ClipTable(records + background, label_column, ("recording", *group_columns), os.path.basename(path))
    return policy.finish(table)
