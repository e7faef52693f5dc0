"""Call detection in long recordings with any finished run: streamed sliding windows, events, Raven tables,
event-level evaluation (:mod:`~reprogram.detect.run`, :mod:`~reprogram.detect.evaluate`)."""

from reprogram.detect.detector import Detector, load_detector
from reprogram.detect.evaluate import average_precision, evaluate, match_events
from reprogram.detect.events import EventRule, all_events, class_events
from reprogram.detect.run import DetectionReport, detect, load_scored
from reprogram.detect.stream import stream_windows, window_starts
from reprogram.detect.tables import read_truth, write_selections

__all__ = ["DetectionReport", "Detector", "EventRule", "all_events", "average_precision", "class_events", "detect",
           "evaluate", "load_detector", "load_scored", "match_events", "read_truth", "stream_windows",
           "window_starts", "write_selections"]
