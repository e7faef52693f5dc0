"""Checks every run applies to its table before training, the same ones ``data check`` reports.

* :func:`conflicts`: rows that would train or score on the same audio twice (the same file and segment listed
  twice) and audio listed under two values of a group column (the same path, or byte-identical files under two
  paths), which lets a grouped split put one recording in train and test. Errors: a run refuses to start.
* :func:`input_report`: what a run will do to readable but unusual clips (pad a very short clip, crop a long
  one, resample, mix channels down) and every row skipped under ``on_error="skip"``, counted once per run and
  listed in full for ``result.json``.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Sequence

from reprogram.data.audio import AudioReadError, audio_info
from reprogram.data.records import ClipRecord, ClipTable

#: a clip shorter than this share of the model's input is mostly zero padding
SHORT_SHARE = 0.5
#: a clip longer than this multiple of the model's input is mostly cropped away
LONG_MULTIPLE = 2.0


class DataConflictError(ValueError):
    """The table lists the same audio twice, or under two groups; the message names both rows and the fix."""


def _content_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def conflicts(table: ClipTable) -> list[tuple[str, str, str]]:
    """``(kind, source, message)`` for every duplicate row and every audio under two groups.

    Kinds: ``duplicate_row`` (same file and segment as an earlier row) and ``group_conflict`` (the same file, or
    a byte-identical copy, under two values of one of ``table.group_columns``).
    """
    out: list[tuple[str, str, str]] = []
    first: dict[tuple, ClipRecord] = {}
    for rec in table:
        key = (rec.path, rec.start_s, rec.end_s)
        if key in first:
            other = first[key]
            clash = f" with a different label ({other.label!r} vs {rec.label!r})" if other.label != rec.label else ""
            out.append(("duplicate_row", rec.source, f"duplicates row {other.source}{clash} ({rec.path}, "
                        f"[{rec.start_s}, {rec.end_s}] s). Fix: delete one of the rows."))
        else:
            first[key] = rec
    groups = [g for g in table.group_columns if g != "recording"]  # Raven's recording group is the file itself
    if not groups:
        return out
    # the same audio: one path, or files of equal size and equal bytes under different paths
    by_size: dict[int, list[str]] = defaultdict(list)
    paths = sorted({r.path for r in table})
    for p in paths:
        try:
            by_size[os.path.getsize(p)].append(p)
        except OSError:
            continue
    same: dict[str, str] = {p: p for p in paths}
    for members in by_size.values():
        if len(members) > 1:
            digests: dict[str, str] = {}
            for p in members:
                d = _content_digest(p)
                same[p] = digests.setdefault(d, p)
    for g in groups:
        seen: dict[str, ClipRecord] = {}
        reported: set[tuple[str, str]] = set()
        for rec in table:
            audio = same.get(rec.path, rec.path)
            other = seen.setdefault(audio, rec)
            a, b = other.groups.get(g), rec.groups.get(g)
            if a != b and (audio, b) not in reported:
                reported.add((audio, b))
                copy = "" if other.path == rec.path else f" (a byte-identical copy: {other.path})"
                out.append(("group_conflict", rec.source, f"{rec.path}{copy} is listed under {g}={b!r} here and "
                            f"under {g}={a!r} in row {other.source}, so a grouped split could train and test on "
                            f"it. Fix: give the recording its one true {g}, or delete the wrong row."))
    return out


def check_run_table(table: ClipTable, limit: int = 20) -> None:
    """Raise :class:`DataConflictError` listing every conflict of ``table`` (see :func:`conflicts`)."""
    found = conflicts(table)
    if found:
        lines = [f"error [{kind}] {source}: {message}" for kind, source, message in found[:limit]]
        more = f"\n... and {len(found) - limit} more (run `reprogram data check` on the table for all)" \
            if len(found) > limit else ""
        raise DataConflictError(f"{table.name or 'the table'}: {len(found)} row(s) would leak or count twice:\n"
                                + "\n".join(lines) + more)


def header(path: str, infos: dict):
    """The header of ``path`` (``audio_info``), or the error reading it raised, read once into ``infos``."""
    if path not in infos:
        try:
            infos[path] = audio_info(path)
        except (FileNotFoundError, AudioReadError) as err:
            infos[path] = err
    return infos[path]


def segment_seconds(rec: ClipRecord, info) -> float:
    """Seconds of ``rec``'s segment that exist in its file (``info`` its header)."""
    end = info.duration if rec.end_s is None else min(rec.end_s, info.duration)
    return max(0.0, end - (rec.start_s or 0.0))


def input_report(table: ClipTable, sample_rate: int, clip_seconds: float | None) -> dict:
    """Skipped rows and readable-but-unusual clips of a run's table, at the run's rate and input length.

    Returns:
        ``{"skipped": [[source, reason], ...], "short": [...], "long": [...], "resampled": [...],
        "multichannel": [...]}``: each unusual list holds ``[source, path, detail]`` rows; ``counts`` sums them.
    """
    report: dict[str, list] = {"skipped": [list(s) for s in table.skipped], "short": [], "long": [],
                               "resampled": [], "multichannel": []}
    infos: dict[str, object] = {}
    for rec in table:
        info = header(rec.path, infos)
        if isinstance(info, Exception):
            continue
        seconds = segment_seconds(rec, info)
        if clip_seconds:
            if seconds < SHORT_SHARE * clip_seconds:
                report["short"].append([rec.source, rec.path, f"{seconds:.3f} s padded to {clip_seconds:g} s"])
            elif seconds > LONG_MULTIPLE * clip_seconds:
                report["long"].append([rec.source, rec.path, f"{seconds:.1f} s cropped to {clip_seconds:g} s"])
        if info.sample_rate != sample_rate:
            report["resampled"].append([rec.source, rec.path, f"{info.sample_rate} Hz -> {sample_rate} Hz"])
        if info.channels > 1:
            report["multichannel"].append([rec.source, rec.path, f"{info.channels} channels mixed to mono"])
    report["counts"] = {k: len(v) for k, v in report.items()}
    return report


def report_lines(report: dict, limit: int = 0) -> list[str]:
    """The report as ``data check``-style lines: every skipped row, then one line per kind of unusual clip
    (``limit`` > 0 also lists that many files of each kind)."""
    lines = [f"warning [skipped_row] {source}: {reason}" for source, reason in report["skipped"]]
    words = {"short": "shorter than {share:g}x the input (mostly zero padding)",
             "long": "longer than {long:g}x the input (cropped)", "resampled": "resampled",
             "multichannel": "mixed down to mono"}
    for kind, text in words.items():
        rows: Sequence = report[kind]
        if rows:
            what = text.format(share=SHORT_SHARE, long=LONG_MULTIPLE)
            lines.append(f"note [{kind}] {len(rows)} clip(s) {what}, e.g. {rows[0][0]}: {rows[0][2]}")
            lines += [f"  {source}: {path}: {detail}" for source, path, detail in rows[:limit]]
    return lines
