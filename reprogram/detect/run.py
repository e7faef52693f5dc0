"""Detection over long recordings: a run scores sliding windows of every file, events are extracted and written
as Raven tables and one CSV, and, given annotated tables, evaluated (``evaluation.json``, a PR figure and a
``result.json`` row like every other run's).

Files written to ``OUT``: ``<recording>.selections.txt`` and ``<recording>.scores.npz`` (window starts and
class probabilities, read back by ``reprogram evaluate-detections``) per recording, as each finishes;
``events.csv`` (rewritten after each recording); ``detection.json`` (settings, timing, failures); with truth
``evaluation.json``, ``pr_curve.png`` and ``runs/<id>/result.json``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reprogram.data.audio import AUDIO_EXTENSIONS, audio_info
from reprogram.detect.detector import Detector, load_detector
from reprogram.detect.events import EventRule, all_events, target_classes
from reprogram.detect.stream import stream_windows
from reprogram.detect.tables import write_events_csv, write_selections

#: labels treated as "no call" by default (never detected)
DEFAULT_BACKGROUND = ("noise", "background", "none")


@dataclass
class DetectionReport:
    """What :func:`detect` did.

    Attributes:
        out: the output folder.
        scored: recording -> window starts, scores, classes, window and duration (see ``evaluate``).
        events: every event row of ``events.csv``.
        failures: ``(path, message)`` of each file that could not be read (the others are complete).
        audio_s: seconds of audio scored; compute_s: seconds spent reading, featurizing and scoring them.
        evaluation: the evaluation (with truth), else ``None``.
    """

    out: Path
    scored: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    audio_s: float = 0.0
    compute_s: float = 0.0
    evaluation: dict | None = None

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio per second of compute."""
        return self.audio_s / self.compute_s if self.compute_s else float("nan")


def audio_files(paths: list[str | Path]) -> list[Path]:
    """The audio files named, folders searched recursively (sorted); a missing path raises naming it."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_EXTENSIONS and f.is_file())
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"audio path not found: {p}. Fix: pass existing files or folders")
    stems: dict[str, Path] = {}
    for f in out:
        if f.stem in stems:
            raise ValueError(f"two recordings named {f.stem!r} ({stems[f.stem]}, {f}): outputs are named by "
                             "recording, so pass them in separate runs")
        stems[f.stem] = f
    return out


def score_file(detector: Detector, path: Path, hop_s: float, batch: int = 32, chunk_s: float = 120.0,
               progress: bool | None = None) -> dict:
    """Window starts ``(W,)`` and class probabilities ``(W, K)`` of one recording, streamed."""
    from tqdm.auto import tqdm

    from reprogram.detect.stream import window_starts

    duration = audio_info(path).duration
    total = len(window_starts(duration, detector.window_s, hop_s))
    starts, scores = [], []
    disable = not sys.stderr.isatty() if progress is None else not progress
    with tqdm(total=total, desc=path.name, unit="win", disable=disable, leave=False) as bar:
        for s, w in stream_windows(path, detector.sample_rate, detector.window_s, hop_s, batch, chunk_s):
            starts.append(s)
            scores.append(detector.score(w))
            bar.update(len(s))
    return {"starts": np.concatenate(starts), "scores": np.concatenate(scores), "classes": detector.classes,
            "window_s": detector.window_s, "duration_s": duration, "path": str(path)}


def detect(run_dir: str | Path, audio: list[str | Path], out: str | Path, *, hop_s: float = 1.0, batch: int = 32,
           rule: EventRule | None = None, background: tuple[str, ...] = DEFAULT_BACKGROUND,
           truth: str | Path | None = None, min_cover: float = 0.5, chunk_s: float = 120.0,
           progress: bool | None = None) -> DetectionReport:
    """Run the finished run ``run_dir`` as a detector over ``audio`` (files or folders) into ``out``.

    Args:
        run_dir: ``DIR/runs/<run id>`` of a finished run.
        audio: recordings or folders of them.
        out: output folder (created).
        hop_s: step between windows in seconds (the window is the run's clip length).
        batch: windows scored per forward pass.
        rule: event extraction rule (default :class:`EventRule`).
        background: class names never detected (the "no call" classes).
        truth: a selection table or folder of them (``<recording>.selections.txt``) to evaluate against.
        min_cover: matching overlap for the evaluation (:mod:`reprogram.detect.evaluate`).
        chunk_s: seconds of windows decoded at a time.
        progress: progress bar per file (``None``: on a terminal).

    An unreadable file is recorded in ``report.failures`` (and ``detection.json``) and skipped; every other
    file's outputs are written.
    """
    rule = rule or EventRule()
    detector = load_detector(run_dir)
    targets = target_classes(detector.classes, background)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = DetectionReport(out)
    for path in audio_files(audio):
        t0 = time.perf_counter()
        try:
            item = score_file(detector, path, hop_s, batch, chunk_s, progress)
        except (OSError, ValueError) as err:  # FileNotFoundError, AudioReadError
            report.failures.append((str(path), str(err)))
            print(f"skipped {path}: {err}", file=sys.stderr)
            continue
        report.compute_s += time.perf_counter() - t0
        report.audio_s += item["duration_s"]
        rec = path.stem
        report.scored[rec] = item
        np.savez(out / f"{rec}.scores.npz", starts=item["starts"], scores=item["scores"].astype(np.float32),
                 classes=np.array(detector.classes), window_s=detector.window_s, duration_s=item["duration_s"],
                 path=str(path))
        events = all_events(item["starts"], item["scores"], detector.classes, targets, detector.window_s, rule,
                            item["duration_s"])
        write_selections(out / f"{rec}.selections.txt", events, path, detector.sample_rate / 2)
        report.events += [{"recording": rec, "path": str(path), "label": lab, "start_s": round(a, 4),
                           "end_s": round(b, 4), "score": round(s, 6)} for lab, a, b, s in events]
        write_events_csv(out / "events.csv", report.events)
    from reprogram.detect.detector import describe

    summary = {"detector": describe(detector), "hop_s": hop_s, "batch": batch, "chunk_s": chunk_s,
               "rule": vars(rule), "targets": targets, "recordings": sorted(report.scored),
               "audio_s": report.audio_s, "compute_s": report.compute_s,
               "real_time_factor": report.real_time_factor, "events": len(report.events),
               "failures": [{"path": p, "error": e} for p, e in report.failures]}
    (out / "detection.json").write_text(json.dumps(summary, indent=1))
    if truth is not None and report.scored:
        from reprogram.detect.report import write_evaluation

        report.evaluation = write_evaluation(out, report.scored, truth, targets, rule, min_cover, summary)
    return report


def load_scored(folder: str | Path) -> dict:
    """The ``<recording>.scores.npz`` files of a detection folder, as :func:`detect` scored them."""
    scored = {}
    for f in sorted(Path(folder).glob("*.scores.npz")):
        with np.load(f, allow_pickle=False) as z:
            scored[f.name[: -len(".scores.npz")]] = {
                "starts": z["starts"], "scores": z["scores"].astype(np.float64), "classes": z["classes"].tolist(),
                "window_s": float(z["window_s"]), "duration_s": float(z["duration_s"]), "path": str(z["path"])}
    if not scored:
        raise FileNotFoundError(f"no *.scores.npz under {folder}: give the --out folder of `reprogram detect`")
    return scored
