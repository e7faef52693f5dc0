"""Shared test fixtures. Tests never download; real recordings are read from ../shared/data when present."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REPROGRAM_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Tests run offline: nothing may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Caches (decoded clips, frozen features, synthetic corpora) go to a folder of this session, never to the
# user's ~/.cache, unless REPROGRAM_CACHE is set by whoever runs the tests (e.g. to reuse corpora across sessions).
_SESSION_CACHE = None if os.environ.get("REPROGRAM_CACHE") else tempfile.mkdtemp(prefix="reprogram-test-cache-")
if _SESSION_CACHE is not None:
    os.environ["REPROGRAM_CACHE"] = _SESSION_CACHE


def pytest_configure(config: pytest.Config) -> None:
    """With ``OMP_NUM_THREADS=N`` set (``.ci/run``'s single-thread pass), run the session on N threads for real.

    OpenMP, MKL and torch read the variable at start-up, but ``reprogram.runtime.threads.configure_threads``
    (called by every ``train()``) gives torch one thread per *usable core*; so the session is also pinned to N of
    its cores (``sched_setaffinity``, inherited by subprocesses), which that function counts.
    """
    value = os.environ.get("OMP_NUM_THREADS")
    if not value:
        return
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise pytest.UsageError(f"OMP_NUM_THREADS={value!r}: set a positive integer (e.g. 1) or unset it")
    import torch

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])
    torch.set_num_threads(threads)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove this session's cache folder (only the one this conftest made)."""
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def _shared(name: str) -> Path:
    folder = SHARED_DATA / name
    if not (folder / "manifest.csv").is_file():
        pytest.skip(f"real recordings not found at {folder} (set REPROGRAM_SHARED_DATA)")
    return folder


@pytest.fixture(scope="session")
def danum_dir() -> Path:
    """../shared/data/danum-gibbon (602 clips, 5 classes, 7 recorders); skips where absent."""
    return _shared("danum-gibbon")


@pytest.fixture(scope="session")
def caller_id_dir() -> Path:
    """../shared/data/gibbon-caller-id (60 clips, 12 individuals); skips where absent."""
    return _shared("gibbon-caller-id")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module: tiny models gain nothing from threads, and on a loaded machine
    oversubscription slows them 10x. Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
