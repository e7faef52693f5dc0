"""Folders of audio files: labels from the class sub-folder, or parsed from file names by a regular expression."""

from __future__ import annotations

import os
import re
from pathlib import Path

from reprogram.data.audio import AUDIO_EXTENSIONS
from reprogram.data.manifest import RowPolicy
from reprogram.data.records import ClipRecord, ClipTable


def load_folder(
    path: str | os.PathLike[str],
    *,
    label_regex: str | None = None,
    on_error: str = "error",
    verify_audio: bool = True,
) -> ClipTable:
    """Load every audio file under a folder (recursively).

    Without ``label_regex`` the layout is folder-per-class: ``<root>/<label>/**/<file>``; files lying
    directly in the root have no class and are reported. With ``label_regex`` the label is the named group
    ``label`` of a match against the file's path relative to the root (``/``-separated, searched, not
    anchored), and every other named group becomes a group column: ``r"(?P<individual>[A-Z]+\\d+)_(?P<label>\\w+)"``.

    Args:
        path: the root folder.
        label_regex: regular expression with a named group ``label``; ``None`` for folder-per-class.
        on_error: ``"error"`` or ``"skip"`` (non-matching or unreadable files listed in ``table.skipped``).
        verify_audio: read each file's header to report unreadable files.

    Returns:
        Clip table (whole files); ``source`` is the relative path.
    """
    root = os.path.abspath(os.fspath(path))
    if not os.path.isdir(root):
        raise NotADirectoryError(f"not a folder: {root}. Fix: pass the folder that holds the audio.")
    pattern = None
    group_columns: tuple[str, ...] = ()
    if label_regex is not None:
        pattern = re.compile(label_regex)
        if "label" not in pattern.groupindex:
            raise ValueError(f"label_regex {label_regex!r} has no named group 'label'. Fix: write the label part "
                             "as (?P<label>...).")
        group_columns = tuple(g for g in pattern.groupindex if g != "label")
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) under {root}. "
                                "Fix: pass the folder holding the recordings.")
    policy = RowPolicy(on_error)
    name = os.path.basename(root)
    records = []
    for f in files:
        rel = f.relative_to(root).as_posix()
        source = f"{name}/{rel}"
        groups: dict[str, str] = {}
        if pattern is None:
            if "/" not in rel:
                policy.fail(source, "file lies in the root folder, not in a class sub-folder",
                            "move it into <root>/<label>/, or pass label_regex=")
                continue
            label = rel.split("/", 1)[0]
        else:
            m = pattern.search(rel)
            if m is None or not m.group("label"):
                policy.fail(source, f"file name does not match label_regex {pattern.pattern!r}",
                            "fix the regular expression or rename the file")
                continue
            label = m.group("label")
            groups = {g: m.group(g) or "" for g in group_columns}
        if verify_audio and not policy.check_audio(source, str(f), None, None):
            continue
        records.append(ClipRecord(str(f), label, groups, None, None, source, {"relative_path": rel}))
    return policy.finish(ClipTable(records, "label", group_columns, name))
