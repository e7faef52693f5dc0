"""Events as Raven Pro selection tables (one per recording) and one tidy CSV; annotated tables read as truth.

A written table ``<recording>.selections.txt`` is tab-separated with the columns ``Selection``, ``View``,
``Channel``, ``Begin Time (s)``, ``End Time (s)``, ``Low Freq (Hz)``, ``High Freq (Hz)``, the label column
(``Annotation``), ``Score`` and ``Begin Path`` (the recording, absolute), one row per event in the
``Spectrogram 1`` view. Frequencies span 0 to the Nyquist frequency of the scored audio (a window detector does
not localise in frequency). :func:`reprogram.data.raven.load_raven` reads it back.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from reprogram.data.manifest import parse_seconds, read_rows, require_columns
from reprogram.data.raven import BEGIN, END, _table_files, one_row_per_selection, recording_of_table

COLUMNS = ("Selection", "View", "Channel", BEGIN, END, "Low Freq (Hz)", "High Freq (Hz)")
EVENT_COLUMNS = ("recording", "path", "label", "start_s", "end_s", "score")


def write_selections(path: str | Path, events: list[tuple[str, float, float, float]], audio: str | Path,
                     high_hz: float, label_column: str = "Annotation") -> Path:
    """Write ``(label, start_s, end_s, score)`` events of one recording as a Raven selection table."""
    path = Path(path)
    header = (*COLUMNS, label_column, "Score", "Begin Path")
    lines = ["\t".join(header)]
    for i, (label, a, b, score) in enumerate(events, start=1):
        lines.append("\t".join([str(i), "Spectrogram 1", "1", f"{a:.4f}", f"{b:.4f}", "0.0", f"{high_hz:.1f}",
                                label, f"{score:.6f}", os.path.abspath(audio)]))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


def write_events_csv(path: str | Path, rows: list[dict]) -> Path:
    """One tidy CSV of every event (:data:`EVENT_COLUMNS`), written atomically."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EVENT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def read_truth(path: str | os.PathLike[str], label_column: str = "Annotation") -> dict[str, list[tuple]]:
    """Annotated events per recording from a selection table or a folder of them (no audio needed).

    The recording of a table is its name's ``<recording>`` part (``<recording>.Table.1.selections.txt`` or
    ``<recording>.selections.txt``); one row per ``Selection``.

    Returns:
        recording -> ``[(label, start_s, end_s), ...]`` sorted by start.

    Raises:
        ValueError: a row has no label or bad times (the table and line are named).
    """
    out: dict[str, list[tuple]] = {}
    for table in _table_files(os.fspath(path)):
        header, rows = read_rows(table, "\t")
        require_columns(table, header, {"label_column": label_column, "begin time": BEGIN, "end time": END})
        events = out.setdefault(recording_of_table(table), [])
        for line, row in one_row_per_selection(rows):
            a, b, label = parse_seconds(row[BEGIN]), parse_seconds(row[END]), row[label_column].strip()
            if a is None or b is None or b <= a or not label:
                raise ValueError(f"{table} line {line}: selection [{a}, {b}] s with label {label!r} is not an "
                                 "event. Fix: give Begin < End Time and a label")
            events.append((label, a, b))
        events.sort(key=lambda e: e[1])
    return out
