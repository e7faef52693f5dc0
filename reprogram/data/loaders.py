"""One entry point for every dataset layout: :func:`load_table` detects the format and calls its loader."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reprogram.data.folder import load_folder
from reprogram.data.hainan import TABLE_EXTENSIONS, is_hainan_table, load_hainan
from reprogram.data.manifest import load_manifest, read_rows
from reprogram.data.raven import BEGIN, load_raven
from reprogram.data.records import ClipTable

FORMATS: tuple[str, ...] = ("auto", "manifest", "raven", "hainan", "folder")
#: label column each format uses when none is given.
DEFAULT_LABEL_COLUMN: dict[str, str] = {"manifest": "label", "raven": "Annotation", "hainan": "Type",
                                        "folder": "label"}


def _is_raven(path: Path) -> bool:
    try:
        return BEGIN in read_rows(path, "\t")[0]
    except (OSError, UnicodeDecodeError):
        return False


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of a dataset path: ``manifest``, ``raven``, ``hainan`` or ``folder``.

    A file: Raven if tab-separated with a ``Begin Time (s)`` column, Hainan if it has ``Start``, ``End`` and
    ``Type`` columns, else a manifest. A folder: a manifest if it holds ``manifest.csv``, Raven if it holds
    selection tables, Hainan if it holds Start/End/Type tables, else a folder of audio files.
    """
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() in (".txt", ".tsv") and _is_raven(p):
            return "raven"
        if p.suffix.lower() in TABLE_EXTENSIONS and is_hainan_table(p):
            return "hainan"
        return "manifest"
    if p.is_dir():
        if (p / "manifest.csv").is_file():
            return "manifest"
        if any(_is_raven(t) for t in p.rglob("*.txt")):
            return "raven"
        if any(is_hainan_table(t) for t in p.rglob("*") if t.suffix.lower() in TABLE_EXTENSIONS):
            return "hainan"
        return "folder"
    raise FileNotFoundError(f"dataset path not found: {path}. Fix: pass a manifest, a folder, or Raven tables.")


def _call(loader: Callable[..., ClipTable], fmt: str, *args: Any, **kwargs: Any) -> ClipTable:
    accepted = inspect.signature(loader).parameters
    unknown = sorted(k for k in kwargs if k not in accepted)
    if unknown:
        options = sorted(k for k, p in accepted.items() if p.kind == p.KEYWORD_ONLY)
        raise ValueError(f"option(s) {unknown} do not apply to the {fmt} format; its options are {options}")
    return loader(*args, **kwargs)


def load_table(
    path: str | os.PathLike[str],
    *,
    label_column: str | None = None,
    group_columns: Sequence[str] = (),
    path_column: str = "path",
    start_column: str | None = None,
    end_column: str | None = None,
    format: str = "auto",
    on_error: str = "error",
    **format_options: Any,
) -> ClipTable:
    """Load any supported dataset layout as a :class:`ClipTable`.

    Args:
        path: a manifest CSV (or a folder holding ``manifest.csv``), a Raven selection table or folder of them,
            a Hainan-format table or folder of them, or a folder of audio files.
        label_column: the task's label column (default per format: ``label`` for manifests, ``Annotation``
            for Raven, ``Type`` for Hainan; ignored for folders, whose label is the class folder or regex).
        group_columns: grouping columns (recorder, individual, site, ...).
        path_column: manifest column with the audio path.
        start_column: manifest column with segment starts in seconds (optional).
        end_column: manifest column with segment ends in seconds (optional).
        format: ``auto`` (detect), ``manifest``, ``raven``, ``hainan`` or ``folder``.
        on_error: ``"error"`` raises at the first bad row; ``"skip"`` drops bad rows and lists them in
            ``table.skipped``.
        **format_options: passed to the format's loader: ``audio_dir``, ``background_windows``,
            ``background_label``, ``background_seconds``, ``background_min_gap_s``, ``seed`` (Raven, Hainan),
            ``label_regex`` (folder), ``delimiter``, ``verify_audio`` (manifest).

    Returns:
        The clip table.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} unknown; use one of {FORMATS}")
    path = os.fspath(path)
    fmt = detect_format(path) if format == "auto" else format
    label = label_column or DEFAULT_LABEL_COLUMN[fmt]
    if fmt == "manifest":
        if os.path.isdir(path):
            path = os.path.join(path, "manifest.csv")
        return _call(load_manifest, fmt, path, label_column=label, group_columns=group_columns,
                     path_column=path_column, start_column=start_column, end_column=end_column, on_error=on_error,
                     **format_options)
    if start_column or end_column or path_column != "path":
        raise ValueError(f"path/start/end columns apply to manifests only, not to the {fmt} format")
    if fmt == "folder":
        if label_column not in (None, "label"):
            raise ValueError(f"a folder has no label column {label_column!r}: its labels are the class sub-folders, "
                             "or the (?P<label>...) group of label_regex=")
        table = _call(load_folder, fmt, path, on_error=on_error, **format_options)
        missing = [g for g in group_columns if g not in table.group_columns]
        if missing:
            raise KeyError(f"group column(s) {missing} not found: a folder's group columns are the named groups of "
                           f"label_regex ({list(table.group_columns)}). Fix: add (?P<{missing[0]}>...) to label_regex.")
        return table
    loader = load_raven if fmt == "raven" else load_hainan
    return _call(loader, fmt, path, label_column=label, group_columns=group_columns, on_error=on_error,
                 **format_options)
