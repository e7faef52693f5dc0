"""Manifest CSV tables (one row per clip), plus the row-error policy and path rules every loader shares."""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from reprogram.data.audio import AudioInfo, AudioReadError, audio_info
from reprogram.data.records import ClipRecord, ClipTable
from reprogram.data.windows import find_overlaps

ON_ERROR: tuple[str, ...] = ("error", "skip")


class TableError(ValueError):
    """A row or column of a dataset table is unusable; the message names the file, row and the fix."""


class TableFileNotFoundError(TableError, FileNotFoundError):
    """A row points at an audio file that does not exist."""


class RowPolicy:
    """Applies the ``on_error`` policy: raise at the first bad row, or skip it and keep a report.

    Args:
        on_error: ``"error"`` raises; ``"skip"`` records ``(source, reason)`` in :attr:`skipped`.
    """

    def __init__(self, on_error: str = "error") -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error={on_error!r}; use one of {ON_ERROR}")
        self.on_error = on_error
        self.skipped: list[tuple[str, str]] = []
        self.notes: list[tuple[str, str]] = []
        self._info: dict[str, AudioInfo | Exception] = {}

    def fail(self, source: str, reason: str, fix: str, missing_file: bool = False) -> None:
        """Raise (``error``) or record (``skip``) one bad row."""
        if self.on_error == "skip":
            self.skipped.append((source, reason))
            return
        cls = TableFileNotFoundError if missing_file else TableError
        raise cls(f"{source}: {reason}. Fix: {fix} (or load with on_error='skip' to skip and report such rows).")

    def check_cells(self, source: str, row: dict, label_column: str | None, group_columns: Sequence[str]) -> bool:
        """Check that the row's label (when ``label_column`` is set) and group cells are filled; returns whether
        the row is kept."""
        if label_column and not row.get(label_column):
            self.fail(source, f"missing label in column {label_column!r}", "fill in the label or delete the row")
            return False
        empty = [g for g in group_columns if not row.get(g)]
        if empty:
            self.fail(source, f"missing group value in column(s) {empty}", "fill in the group or delete the row")
            return False
        return True

    def info(self, path: str) -> AudioInfo | Exception:
        """Header of ``path`` (cached), or the exception reading it raised."""
        if path not in self._info:
            try:
                self._info[path] = audio_info(path)
            except (FileNotFoundError, AudioReadError) as err:
                self._info[path] = err
        return self._info[path]

    def check_audio(self, source: str, path: str, start_s: float | None, end_s: float | None) -> bool:
        """Check the file's header and the segment's bounds; returns whether the row is kept."""
        info = self.info(path)
        if isinstance(info, FileNotFoundError):
            self.fail(source, f"audio file not found: {path}", "correct the path (relative paths are resolved "
                      "against the table's folder, or pass audio_dir=)", missing_file=True)
            return False
        if isinstance(info, Exception):
            self.fail(source, f"unreadable audio file {path} ({info})", "re-export or re-copy the file")
            return False
        if start_s is not None and start_s >= info.duration:
            self.fail(source, f"segment starts at {start_s} s but {path} is {info.duration:.3f} s long",
                      "correct the start/end times of this row")
            return False
        if end_s is not None and end_s > info.duration + 0.05:
            self.notes.append((source, f"segment ends at {end_s} s, after the end of {path} "
                                       f"({info.duration:.3f} s); only the existing part is read"))
        return True

    def finish(self, table: ClipTable) -> ClipTable:
        """Attach the skipped rows and notes to a table; skipped rows also raise a warning (never silent)."""
        if self.skipped:
            rows = "\n".join(f"  {source}: {reason}" for source, reason in self.skipped)
            warnings.warn(f"{table.name}: skipped {len(self.skipped)} row(s) under on_error='skip' (also in "
                          f"table.skipped):\n{rows}", stacklevel=3)
        table.skipped.extend(self.skipped)
        table.notes.extend(self.notes)
        return table


def note_overlaps(records: Sequence[ClipRecord], policy: RowPolicy) -> None:
    """Add a note for every pair of annotations that overlap in time in the same file."""
    for i, j in find_overlaps(records):
        a, b = records[i], records[j]
        policy.notes.append((a.source, f"annotation [{a.start_s}, {a.end_s}] s ({a.label}) overlaps {b.source} "
                                       f"[{b.start_s}, {b.end_s}] s ({b.label}) in {a.path}"))


def resolve_path(value: str, base: str | os.PathLike[str]) -> str:
    """Absolute, normalised path of ``value`` (``~`` expanded; relative paths resolved against ``base``)."""
    p = Path(os.path.expanduser(value.strip()))
    if not p.is_absolute():
        p = Path(base) / p
    return os.path.normpath(os.path.abspath(p))


def parse_seconds(value: str | None) -> float | None:
    """Seconds from a table cell; empty cells give ``None``; raises ValueError on text or NaN."""
    if value is None or not value.strip():
        return None
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"{value!r} is not a finite number")
    return x


def read_rows(path: str | os.PathLike[str], delimiter: str = ",") -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a delimited text table.

    UTF-8 (with or without an Excel byte-order mark) is tried first, then Windows-1252 and Latin-1, the
    encodings Raven Pro and spreadsheet programs write on Windows.
    """
    with open(path, "rb") as f:
        raw = f.read()
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    rows = [{(k or "").strip(): (v or "").strip() if isinstance(v, str) else "" for k, v in row.items()}
            for row in reader]
    return header, rows


def require_columns(table_path: str | os.PathLike[str], header: Sequence[str], wanted: dict[str, str | None]) -> None:
    """Raise a KeyError naming the table, the missing column, the option that names it and the columns there are."""
    joined = [c for c in header if ";" in c or "\t" in c]
    if len(header) == 1 and joined:  # the whole header in one cell: the file uses another separator
        sep = ";" if ";" in joined[0] else "\t"
        raise KeyError(
            f"{table_path}: the header {header[0]!r} is one column, so the file is not comma-separated; it looks "
            f"{'semicolon' if sep == ';' else 'tab'}-separated. Fix: pass delimiter={sep!r} "
            f"(`--delimiter '{sep}'` for `reprogram data`, `--set data.options.delimiter='{sep}'` for `reprogram run`)."
        )
    for option, column in wanted.items():
        if column is not None and column not in header:
            raise KeyError(
                f"{table_path}: no column {column!r} (option {option}=). Its columns are {list(header)}; "
                f"pass {option}= with one of them."
            )


def load_manifest(
    path: str | os.PathLike[str],
    *,
    label_column: str | None = "label",
    group_columns: Sequence[str] = (),
    path_column: str = "path",
    start_column: str | None = None,
    end_column: str | None = None,
    on_error: str = "error",
    audio_dir: str | os.PathLike[str] | None = None,
    delimiter: str | None = None,
    verify_audio: bool = True,
) -> ClipTable:
    """Load a manifest CSV with one row per clip.

    Args:
        path: the CSV file (``.tsv`` files are read tab-separated).
        label_column: column holding the task label; ``None`` for unlabelled audio.
        group_columns: grouping columns (recorder, individual, site, date) for grouped splits.
        path_column: column holding the audio path (relative paths resolve against ``audio_dir``).
        start_column: optional column of segment start times in seconds.
        end_column: optional column of segment end times in seconds.
        on_error: ``"error"`` raises at the first bad row; ``"skip"`` drops it and lists it in ``table.skipped``.
        audio_dir: base folder of relative audio paths (default: the manifest's folder).
        delimiter: field separator (default ``,``; tab for ``.tsv``).
        verify_audio: read each file's header to report missing/unreadable files and out-of-range segments.

    Returns:
        The clip table; each record's ``source`` is ``"<file>:<line>"``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"manifest not found: {path}. Fix: pass the path of an existing CSV file.")
    delimiter = delimiter or ("\t" if path.lower().endswith(".tsv") else ",")
    header, rows = read_rows(path, delimiter)
    group_columns = tuple(group_columns)
    require_columns(path, header, {"path_column": path_column, "label_column": label_column,
                                   "start_column": start_column, "end_column": end_column})
    for g in group_columns:
        require_columns(path, header, {"group_column": g})
    base = audio_dir if audio_dir is not None else os.path.dirname(os.path.abspath(path))
    policy = RowPolicy(on_error)
    used = {path_column, label_column, start_column, end_column, *group_columns}
    name = os.path.basename(path)
    records = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        source = f"{name}:{line}"
        if not row.get(path_column):
            policy.fail(source, f"empty {path_column!r} cell", "fill in the audio path or delete the row")
            continue
        if not policy.check_cells(source, row, label_column, group_columns):
            continue
        label = row[label_column] if label_column else None
        try:
            start = parse_seconds(row.get(start_column)) if start_column else None
            end = parse_seconds(row.get(end_column)) if end_column else None
        except ValueError as err:
            policy.fail(source, f"bad start/end time ({err})", "write times as seconds, e.g. 12.5")
            continue
        if start is not None and end is not None and end <= start:
            policy.fail(source, f"end {end} s is not after start {start} s", "correct the start/end times")
            continue
        audio = resolve_path(row[path_column], base)
        if verify_audio and not policy.check_audio(source, audio, start, end):
            continue
        groups = {g: row[g] for g in group_columns}
        meta = {k: v for k, v in row.items() if k not in used}
        records.append(ClipRecord(audio, label, groups, start, end, source, meta))
    if start_column or end_column:
        note_overlaps(records, policy)
    table = ClipTable(records, label_column or "", group_columns, name)
    return policy.finish(table)
