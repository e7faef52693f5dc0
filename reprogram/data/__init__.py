"""Recordings and tables -> labelled waveform batches at the backbone's sample rate."""

from reprogram.data.records import ClipRecord, ClipTable

__all__ = ["ClipRecord", "ClipTable"]
