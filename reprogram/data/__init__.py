"""Recordings and tables -> labelled waveform batches at the backbone's sample rate.

``load_table`` reads any supported layout (manifest CSV, Raven selection tables, Hainan start/end/type
tables, folders); splits live in ``reprogram.data.splits`` and the torch dataset in ``reprogram.data.dataset``.
"""

from reprogram.data.loaders import load_table
from reprogram.data.records import ClipRecord, ClipTable

__all__ = ["ClipRecord", "ClipTable", "load_table"]
