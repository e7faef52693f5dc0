"""Raven selection tables over long recordings: event clips and, for detection, background windows.

A Raven Pro selection table is tab-separated text with one row per selection and per view (a selection
drawn on a spectrogram and a waveform view appears twice, once per ``View``: rows are de-duplicated by
``Selection``). Columns used: ``Begin Time (s)``, ``End Time (s)``, ``Low Freq (Hz)``, ``High Freq (Hz)``,
the label column (``Annotation``, ``Call type``, ...), and optionally ``Begin File``, ``Begin Path`` and
``File Offset (s)`` (tables made over a file list: times then count from the start of the list, and the
offset gives the time inside ``Begin File``).
"""

from __future__ import annotations

import os
import re
import statistics
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reprogram.data.audio import AUDIO_EXTENSIONS
from reprogram.data.manifest import RowPolicy, note_overlaps, parse_seconds, read_rows, require_columns
from reprogram.data.records import ClipRecord, ClipTable
from reprogram.data.windows import sample_background

BEGIN, END = "Begin Time (s)", "End Time (s)"
_TABLE_SUFFIX = re.compile(r"(\.Table\.\d+)?\.selections\.txt$|\.txt$", re.IGNORECASE)


class AudioIndex:
    """Audio files under a folder (recursively), looked up by file name or by stem.

    Args:
        folder: the audio folder.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = os.path.abspath(folder)
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, list[str]] = {}
        for p in sorted(Path(self.folder).rglob("*")):
            if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file():
                self.by_name.setdefault(p.name.lower(), str(p))
                self.by_stem.setdefault(p.stem.lower(), []).append(str(p))

    def find(self, name: str) -> str | None:
        """Path of the file called ``name`` (a base name, or a stem without extension), else ``None``."""
        base = name.replace("\\", "/").rsplit("/", 1)[-1].lower()
        if base in self.by_name:
            return self.by_name[base]
        hits = self.by_stem.get(base, [])
        return hits[0] if len(hits) == 1 else None

    def ambiguous(self, name: str) -> list[str]:
        """Every file with stem ``name`` when there are several (``find`` then refuses to guess)."""
        hits = self.by_stem.get(name.replace("\\", "/").rsplit("/", 1)[-1].lower(), [])
        return hits if len(hits) > 1 else []


def one_row_per_selection(rows: list[dict[str, str]]) -> list[tuple[int, dict[str, str]]]:
    """``(line, row)`` pairs with one row per ``Selection``, preferring a spectrogram view's row.

    Raven writes a selection once per view (``Spectrogram 1``, ``Waveform 1``); only the spectrogram
    view carries meaningful frequency bounds. Rows without a ``Selection`` number are all kept.
    """
    chosen: dict[str, int] = {}
    for i, row in enumerate(rows):
        sel = row.get("Selection", "")
        if not sel:
            continue
        if sel not in chosen or (row.get("View", "").startswith("Spectrogram")
                                 and not rows[chosen[sel]].get("View", "").startswith("Spectrogram")):
            chosen[sel] = i
    keep = set(chosen.values())
    return [(i + 2, row) for i, row in enumerate(rows) if not row.get("Selection") or i in keep]


def recording_of_table(table_path: str | os.PathLike[str]) -> str:
    """Recording name from the table-name convention ``<recording>.Table.1.selections.txt``."""
    return _TABLE_SUFFIX.sub("", os.path.basename(table_path))


def add_background(
    records: list[ClipRecord],
    policy: RowPolicy,
    recordings: Sequence[tuple[str, str, dict[str, str]]],
    k: int,
    *,
    label: str = "background",
    window_s: float | None = None,
    min_gap_s: float = 1.0,
    seed: int = 0,
) -> list[ClipRecord]:
    """Background windows sampled away from every event of each recording.

    Args:
        records: the event clips (every label counts as an event).
        policy: the loader's policy (for file headers and notes).
        recordings: ``(audio path, source name, groups)`` of each recording to sample from.
        k: windows per recording.
        label: label of the background windows.
        window_s: window length (default: median event duration, rounded to 0.1 s).
        min_gap_s: minimum distance from any event in seconds.
        seed: base seed; each recording's generator is seeded from it and the file name (stable order).

    Returns:
        The background records (sources ``"<table>:background<i>"``).
    """
    if k <= 0:
        return []
    if window_s is None:
        spans = [r.duration_s for r in records if r.duration_s]
        if not spans:
            raise ValueError("no events to take a background window length from; pass background_seconds=")
        window_s = round(statistics.median(spans), 1) or 0.1
    out = []
    for path, name, groups in recordings:
        info = policy.info(path)
        if isinstance(info, Exception):
            continue  # the event rows of this recording already report it
        events = [(r.start_s or 0.0, r.end_s if r.end_s is not None else info.duration)
                  for r in records if r.path == path]
        rng = np.random.default_rng([seed, zlib.crc32(os.path.basename(path).encode())])
        windows = sample_background(info.duration, events, window_s, k, rng, min_gap_s)
        if len(windows) < k:
            policy.notes.append((name, f"only {len(windows)} of {k} background windows of {window_s} s fit in "
                                       f"{path} at {min_gap_s} s from every event"))
        for i, (s, e) in enumerate(windows):
            out.append(ClipRecord(path, label, dict(groups), s, e, f"{name}:background{i}", {"background": "1"}))
    return out


def _table_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    files = [str(p) for p in sorted(Path(path).rglob("*.txt"))]
    tables = [f for f in files if BEGIN in read_rows(f, "\t")[0]]
    if not tables:
        raise FileNotFoundError(f"no Raven selection tables (tab-separated .txt with a {BEGIN!r} column) under "
                                f"{path}. Fix: pass the folder holding the *.selections.txt files.")
    return tables


def load_raven(
    path: str | os.PathLike[str],
    *,
    label_column: str = "Annotation",
    group_columns: Sequence[str] = (),
    audio_dir: str | os.PathLike[str] | None = None,
    on_error: str = "error",
    background_windows: int = 0,
    background_label: str = "background",
    background_seconds: float | None = None,
    background_min_gap_s: float = 1.0,
    seed: int = 0,
) -> ClipTable:
    """Load one Raven selection table, or every table in a folder, as event clips.

    The audio of a row is found through ``Begin Path`` (as written, else its file name inside
    ``audio_dir``), ``Begin File``, or the table name ``<recording>.Table.1.selections.txt``.
    Every record gets the group ``recording`` (the audio file's stem) besides ``group_columns``.

    Args:
        path: a selection table or a folder of them.
        label_column: column with the label (``Annotation``, ``Call type``, ``Species``, ...).
        group_columns: other table columns to use as groups (e.g. ``Site``).
        audio_dir: folder searched for the audio (default: the table's folder).
        on_error: ``"error"`` or ``"skip"`` (skipped rows listed in ``table.skipped``).
        background_windows: background windows to sample per recording (detection); 0 for none.
        background_label: label of the background windows.
        background_seconds: background window length (default: median event duration).
        background_min_gap_s: minimum distance between a background window and any event.
        seed: seed of the background sampling.

    Returns:
        Clip table; overlapping annotations are listed in ``table.notes``.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Raven table or folder not found: {path}. Fix: pass an existing path.")
    tables = _table_files(path)
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    index = AudioIndex(audio_dir if audio_dir is not None else folder)
    policy = RowPolicy(on_error)
    group_columns = tuple(g for g in group_columns if g != "recording")  # "recording" is always added
    records: list[ClipRecord] = []
    recordings: dict[str, tuple[str, str, dict[str, str]]] = {}
    for table_path in tables:
        name = os.path.basename(table_path)
        header, rows = read_rows(table_path, "\t")
        require_columns(table_path, header, {"label_column": label_column, "begin time": BEGIN, "end time": END})
        for g in group_columns:
            require_columns(table_path, header, {"group_column": g})
        if not rows:  # a recording without events still gives background windows
            audio = index.find(recording_of_table(table_path))
            if audio is not None:
                recordings.setdefault(audio, (audio, name, {"recording": Path(audio).stem,
                                                            **{g: "" for g in group_columns}}))
                if group_columns and background_windows:
                    policy.notes.append((name, f"table has no rows: its background windows get empty "
                                               f"{list(group_columns)} values"))
        for line, row in one_row_per_selection(rows):
            source = f"{name}:{line}"
            audio = _find_audio(row, table_path, index)
            if audio is None:
                named = row.get("Begin File") or row.get("Begin Path")
                wanted = row.get("Begin File") or os.path.basename(row.get("Begin Path", "")) \
                    or recording_of_table(table_path)
                several = index.ambiguous(os.path.splitext(wanted)[0]) or index.ambiguous(wanted)
                found = f"several files match: {several}" if several else f"none found under {index.folder}"
                looked = (f"the row names {named!r}, so the table's own recording is not used in its place"
                          if named else f"looked for {recording_of_table(table_path)!r} from the table name")
                policy.fail(source, f"no audio file for this row ({looked}; {found})",
                            "pass audio_dir= pointing at the recordings, or keep one file per recording name",
                            missing_file=True)
                continue
            try:
                begin, end = parse_seconds(row[BEGIN]), parse_seconds(row[END])
                offset = parse_seconds(row.get("File Offset (s)")) if row.get("Begin File") else None
            except ValueError as err:
                policy.fail(source, f"bad time ({err})", "write times as seconds")
                continue
            if begin is None or end is None or end <= begin:
                policy.fail(source, f"selection [{begin}, {end}] s is empty", "correct Begin/End Time")
                continue
            if offset is not None:
                begin, end = offset, offset + (end - begin)
            if not policy.check_cells(source, row, label_column, group_columns):
                continue
            label = row[label_column]
            if not policy.check_audio(source, audio, begin, end):
                continue
            groups = {"recording": Path(audio).stem, **{g: row[g] for g in group_columns}}
            meta = {k: v for k, v in row.items() if k not in (label_column, BEGIN, END, *group_columns)}
            records.append(ClipRecord(audio, label, groups, begin, end, source, meta))
            recordings.setdefault(audio, (audio, name, groups))
    note_overlaps(records, policy)
    background = add_background(records, policy, list(recordings.values()), background_windows,
                                label=background_label, window_s=background_seconds,
                                min_gap_s=background_min_gap_s, seed=seed)
    table = ClipTable(records + background, label_column, ("recording", *group_columns), os.path.basename(path))
    return policy.finish(table)


def _find_audio(row: dict[str, str], table_path: str, index: AudioIndex) -> str | None:
    begin_path = row.get("Begin Path", "")
    if begin_path:
        as_written = os.path.join(os.path.dirname(os.path.abspath(table_path)), os.path.expanduser(begin_path))
        if os.path.isfile(as_written):  # absolute, or relative to the table's folder
            return os.path.normpath(as_written)
        found = index.find(begin_path)
        if found:
            return found
    if row.get("Begin File"):
        return index.find(row["Begin File"])
    if begin_path:  # the row names its file: never read another recording in its place
        return None
    return index.find(recording_of_table(table_path))
