"""make_loader: same batches with or without workers for a seed; threads that do not oversubscribe the cores."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import Dataset

from reprogram.data import load_table
from reprogram.data.dataset import WaveformDataset
from reprogram.runtime.threads import auto_workers, available_cores, configure_threads, make_loader


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["path,label"]
    for i in range(10):
        sf.write(tmp_path / f"c{i}.wav", rng.standard_normal(8000 + 400 * i).astype(np.float32) * 0.1, 8000)
        lines.append(f"c{i}.wav,{'ab'[i % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return WaveformDataset(load_table(tmp_path / "m.csv"), 8000, 0.5, crop="random", seed=1)


def epochs(loader, n: int) -> list[list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    out = []
    for e in range(n):
        loader.set_epoch(e)
        out.append([tuple(b) for b in loader])
    return out


def test_batches_identical_with_and_without_workers(dataset):
    serial = epochs(make_loader(dataset, 3, shuffle=True, seed=7, num_workers=0), 2)
    parallel = epochs(make_loader(dataset, 3, shuffle=True, seed=7, num_workers=2), 2)  # persistent workers
    for a_epoch, b_epoch in zip(serial, parallel, strict=True):
        assert len(a_epoch) == 4
        for a, b in zip(a_epoch, b_epoch, strict=True):
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    first, second = serial
    assert first[0][2].tolist() != second[0][2].tolist()  # a new order each epoch
    crops = [{int(i): w for b in batches for w, i in zip(b[0], b[2], strict=True)} for batches in serial]
    assert not torch.equal(crops[0][4], crops[1][4])  # and new random crops, also inside persistent workers
    resumed = make_loader(dataset, 3, shuffle=True, seed=7, num_workers=0)
    resumed.set_epoch(1)  # an epoch's batches do not depend on the epochs iterated before
    assert all(torch.equal(a[0], b[0]) for a, b in zip(second, list(resumed), strict=True))
    other = epochs(make_loader(dataset, 3, shuffle=True, seed=8, num_workers=0), 1)[0]
    assert [b[2].tolist() for b in other] != [b[2].tolist() for b in first]
    ordered = list(make_loader(dataset, 4, shuffle=False, seed=0, num_workers=0))
    assert torch.cat([b[2] for b in ordered]).tolist() == list(range(10))


class ThreadReport(Dataset):
    """Each item reports the thread limits of the process that fetched it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        from threadpoolctl import threadpool_info

        blas = [p["num_threads"] for p in threadpool_info()]
        return torch.tensor([torch.get_num_threads(), max(blas, default=1)])


def test_workers_run_one_thread_and_model_threads_leave_room_for_them():
    loader = make_loader(ThreadReport(), 2, shuffle=False, seed=0, num_workers=2)
    assert loader.loader.pin_memory is False and loader.loader.persistent_workers
    for batch in loader:
        assert batch.max().item() == 1  # torch and BLAS/OpenMP pools limited to 1 thread in each worker
    before = (torch.get_num_threads(), torch.get_num_interop_threads())
    try:
        plan = configure_threads(1, cores=2)
        assert plan.intra_op == 1 and torch.get_num_threads() == 1
        plan = configure_threads(0)
        assert plan.cores == available_cores() and torch.get_num_threads() == available_cores()
        assert configure_threads(64, cores=4).intra_op == 1  # never below one thread
        with pytest.raises(ValueError, match="num_workers"):
            configure_threads(-1)
    finally:
        torch.set_num_threads(before[0])


def test_auto_workers_only_where_they_help(dataset):
    assert auto_workers(dataset, "cpu", cores=8) == 2  # clips still to decode: workers overlap decoding
    assert auto_workers(dataset, "cpu", cores=1) == 0
    loader = make_loader(dataset, 4, shuffle=True, seed=0)  # auto: decodes once here, then needs no workers
    assert dataset.in_memory and loader.num_workers == 0
    assert auto_workers(dataset, "cuda", cores=8) == 2 and auto_workers(dataset, "cpu", cores=8) == 0
    with pytest.raises(ValueError, match="num_workers"):
        make_loader(dataset, 4, shuffle=True, seed=0, num_workers=-2)
    with pytest.raises(ValueError, match="batch_size"):
        make_loader(dataset, 0, shuffle=True, seed=0)


@pytest.mark.numerics
@pytest.mark.skipif(not os.environ.get("OMP_NUM_THREADS"), reason="checks the OMP_NUM_THREADS pass of .ci/run")
def test_omp_num_threads_reaches_torch_and_train():
    """Under ``OMP_NUM_THREADS=N`` (tests/conftest.py) torch runs N threads, and so does what train() configures."""
    threads = int(os.environ["OMP_NUM_THREADS"])
    assert torch.get_num_threads() == threads
    before = torch.get_num_threads()
    try:
        assert configure_threads(0).intra_op == threads  # train(): configure_threads(workers, usable cores)
    finally:
        torch.set_num_threads(before)
