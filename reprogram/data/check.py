"""``data check``: counts, durations, sample rates, every problem of a dataset, and leakage warnings.

Errors (the check fails): missing or unreadable files, empty or NaN audio, missing labels, duplicate rows,
rows dropped while loading. Warnings: overlapping annotations, segments past the end of a file, silent
audio, rare classes, skipped rows under ``on_error="skip"``, and trivial cues that predict the label.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from reprogram.data.audio import AudioReadError, scan_audio
from reprogram.data.integrity import conflicts, header, segment_seconds
from reprogram.data.records import ClipTable

#: fewer clips than this in a class gets a warning (too few for 5-fold cross-validation).
RARE_CLASS = 5


@dataclass(frozen=True)
class Problem:
    """One finding, naming the row and file.

    Attributes:
        severity: ``"error"`` or ``"warning"``.
        kind: ``missing_file``, ``unreadable_file``, ``empty_audio``, ``nan_audio``, ``missing_label``,
            ``duplicate_row``, ``group_conflict``, ``bad_row``, ``overlapping_annotations``, ``segment_past_end``,
            ``silent_audio``,            ``background``, ``rare_class``, ``skipped_row``, ``leakage``.
        source: the row (``"manifest.csv:12"``) or ``""`` for table-wide findings.
        message: what is wrong (names the file) and, for errors, the fix.
    """

    severity: str
    kind: str
    source: str
    message: str


@dataclass
class CheckReport:
    """Everything ``data check`` found; :meth:`to_dict` is its JSON form."""

    name: str
    n_clips: int
    classes: dict[str, int]
    groups: dict[str, dict[str, int]]
    durations: dict[str, float]
    sample_rates: dict[str, int]
    channels: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    leakage: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0
    class_by_group: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def to_dict(self) -> dict:
        out = asdict(self)
        out.update(n_classes=len(self.classes), n_groups={g: len(v) for g, v in self.groups.items()},
                   n_errors=len(self.errors), n_warnings=len(self.warnings))
        return out


def _row_kind(reason: str) -> str:
    pairs = (("not found", "missing_file"), ("no audio file", "missing_file"), ("no recording", "missing_file"),
             ("unreadable", "unreadable_file"), ("missing label", "missing_label"))
    for key, kind in pairs:
        if key in reason:
            return kind
    return "bad_row"


def _note_kind(message: str) -> str:
    if "overlaps" in message:
        return "overlapping_annotations"
    if "after the end" in message:
        return "segment_past_end"
    return "background" if "background" in message else "note"


def _decode_problems(table: ClipTable) -> list[Problem]:
    """Decode every distinct clip once, block by block: empty, NaN, silent or undecodable audio."""
    problems, seen = [], set()
    for rec in table:
        key = (rec.path, rec.start_s, rec.end_s)
        if key in seen:
            continue
        seen.add(key)
        try:
            scan = scan_audio(rec.path, rec.start_s, rec.end_s)
        except FileNotFoundError as err:
            problems.append(Problem("error", "missing_file", rec.source, str(err)))
            continue
        except AudioReadError as err:
            problems.append(Problem("error", "unreadable_file", rec.source, str(err)))
            continue
        if scan.frames == 0:
            problems.append(Problem("error", "empty_audio", rec.source, f"{rec.path} has no samples"
                                    f"{' in this segment' if rec.start_s is not None else ''}. Fix: replace the file, "
                                    "correct the segment, or delete the row."))
        elif scan.nonfinite:
            problems.append(Problem("error", "nan_audio", rec.source, f"{rec.path} has {scan.nonfinite} NaN/inf "
                                    "samples. Fix: re-export the file from the original recording."))
        elif scan.peak == 0:
            problems.append(Problem("warning", "silent_audio", rec.source, f"{rec.path} is all zeros"))
    return problems


def check_table(
    table: ClipTable,
    *,
    on_error: str = "error",
    decode: bool = True,
    leakage: bool = True,
    clip_seconds: float | None = None,
    seed: int = 0,
) -> CheckReport:
    """Inspect a loaded table (load it with ``on_error="skip"`` so every bad row is listed).

    Args:
        table: the clips, with ``table.skipped`` and ``table.notes`` from loading.
        on_error: the policy the user wants: under ``"skip"`` skipped rows are warnings, else errors.
        decode: decode every clip to find empty, NaN and silent audio (headers alone are always read).
        leakage: run the leakage baselines (needs labels and at least two classes).
        clip_seconds: model input length for the padding-fraction cue (default: the longest clip).
        seed: seed of the leakage baselines.

    Returns:
        The report.
    """
    t0 = time.perf_counter()
    problems = [Problem("warning" if on_error == "skip" else "error",
                        "skipped_row" if on_error == "skip" else _row_kind(reason), source,
                        reason if on_error == "skip" else f"{reason} (the row was not loaded)")
                for source, reason in table.skipped]
    problems += [Problem("warning", _note_kind(msg), source, msg) for source, msg in table.notes]
    # headers: durations, sample rates, channels
    infos, durations, readable = {}, [], []
    for rec in table:
        first_read = rec.path not in infos
        info = header(rec.path, infos)
        if isinstance(info, Exception):
            if first_read:
                kind = "missing_file" if isinstance(info, FileNotFoundError) else "unreadable_file"
                problems.append(Problem("error", kind, rec.source, str(info)))
            continue
        durations.append(segment_seconds(rec, info))
        readable.append(rec)
    problems += [Problem("error", kind, source, message) for kind, source, message in conflicts(table)]
    unlabelled = [r for r in table if r.label is None]
    if unlabelled and table.label_column:
        problems += [Problem("error", "missing_label", r.source, f"{r.path} has no label") for r in unlabelled]
    if decode:
        problems += _decode_problems(ClipTable(readable, table.label_column, table.group_columns, table.name))
    classes = dict(sorted(Counter(r.label for r in table if r.label is not None).items()))
    for c, n in classes.items():
        if n < RARE_CLASS:
            problems.append(Problem("warning", "rare_class", "", f"class {c!r} has only {n} clip(s): too few for "
                                    f"{RARE_CLASS}-fold cross-validation"))
    leak = []
    labelled = ClipTable([r for r in readable if r.label is not None], table.label_column, table.group_columns)
    if leakage and len(labelled.classes) >= 2 and len(labelled) >= 10:
        from reprogram.data.leakage import leakage_checks  # scikit-learn only when the baselines run

        durs = [d for r, d in zip(readable, durations, strict=True) if r.label is not None]
        for res in leakage_checks(labelled, durs, table.group_columns, clip_seconds, seed):
            leak.append(res.to_dict())
            if res.warn:
                problems.append(Problem("warning", "leakage", "", res.message))
    rates = Counter(str(i.sample_rate) for i in infos.values() if not isinstance(i, Exception))
    chans = Counter(str(i.channels) for i in infos.values() if not isinstance(i, Exception))
    stats = {"min_s": min(durations), "median_s": statistics.median(durations), "max_s": max(durations),
             "total_s": sum(durations)} if durations else {}
    groups = {g: dict(sorted(Counter(r.groups.get(g, "") for r in table).items())) for g in table.group_columns}
    by_group: dict[str, dict[str, dict[str, int]]] = {}
    for g in table.group_columns:
        pairs = Counter((r.groups.get(g, ""), r.label) for r in table if r.label is not None)
        by_group[g] = {v: {c: pairs[v, c] for c in classes if pairs[v, c]} for v in groups[g]}
    return CheckReport(table.name, len(table), classes, groups, stats, dict(rates), dict(chans), problems, leak,
                       time.perf_counter() - t0, by_group)


def format_report(report: CheckReport, problems: bool = True, limit: int = 50) -> str:
    """A report as text for the terminal (at most ``limit`` problems of each severity)."""
    lines = [f"{report.name}: {report.n_clips} clips, {len(report.classes)} classes"]
    width = max([len(c) for c in report.classes] + [5])
    lines += [f"  {c:<{width}} {n:>6}" for c, n in report.classes.items()]
    for g, counts in report.groups.items():
        lines.append(f"{g}: {len(counts)} groups: " + ", ".join(f"{v} ({n})" for v, n in counts.items()))
        cross = report.class_by_group.get(g, {})
        if cross and len(counts) <= 30:  # class x group table
            gw = max(len(v) for v in counts) + 1
            lines.append(f"  {'class':<{width}} " + "".join(f"{v:>{max(gw, 5)}}" for v in counts))
            for c in report.classes:
                lines.append(f"  {c:<{width}} " + "".join(f"{cross[v].get(c, 0):>{max(gw, 5)}}" for v in counts))
    if report.durations:
        d = report.durations
        lines.append(f"durations: min {d['min_s']:.2f} s, median {d['median_s']:.2f} s, max {d['max_s']:.2f} s, "
                     f"total {d['total_s'] / 3600:.2f} h")
    lines.append("sample rates: " + ", ".join(f"{r} Hz ({n} files)" for r, n in report.sample_rates.items()))
    lines.append("channels: " + ", ".join(f"{c} ({n} files)" for c, n in report.channels.items()))
    for res in report.leakage:
        lines.append(("WARNING " if res["warn"] else "leakage ") + res["message"])
    if problems:
        for sev, items in (("ERROR", report.errors), ("warning", report.warnings)):
            shown = [p for p in items if p.kind != "leakage"]
            for p in shown[:limit]:
                lines.append(f"{sev} [{p.kind}] {p.source + ': ' if p.source else ''}{p.message}")
            if len(shown) > limit:
                lines.append(f"... and {len(shown) - limit} more {sev.lower()}s (use --json for all)")
    lines.append(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return "\n".join(lines)


def kinds(problems: Sequence[Problem]) -> Counter:
    """Number of problems of each kind."""
    return Counter(p.kind for p in problems)
