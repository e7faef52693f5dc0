"""Data-parallel training: 2 CPU processes (torchrun, gloo) end where one process ends, for the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from reprogram.runtime.distributed import (
    DistEnv,
    global_mean_loss,
    unused_parameters,
    wrap_model,
)
from reprogram.runtime.sharding import ShardBatchSampler, make_shard_loader, shard_bounds
from reprogram.runtime.threads import EpochSampler, make_loader
from tests import ddp_worker

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.numerics
def test_two_processes_match_one_process(tmp_path):
    """Class-weighted, label-smoothed loss, a last global batch of one clip (rank 1 pads), random crops, a frozen
    part with a batch-norm buffer and a data-fitted buffer: same weights, history and validation metrics."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tests.ddp_worker", str(tmp_path)]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    reference = ddp_worker.run(None)  # one process, same global batch and seed

    for name, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][name]), name  # the ranks agree exactly
        torch.testing.assert_close(value, reference["state"][name], atol=1e-5, rtol=1e-5, msg=name)
    assert set(ranks[0]["state"]) == set(reference["state"]) == {"program", "head.weight", "head.bias", "prior"}
    for rank in ranks:
        assert rank["best_epoch"] == reference["best_epoch"]
        for got, want in zip(rank["history"], reference["history"], strict=True):
            assert got == pytest.approx(want, abs=1e-5)
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "loss"):
            assert rank["best_val"][key] == pytest.approx(reference["best_val"][key], abs=1e-5), key
        assert rank["frozen_unchanged"] and rank["process_group_ended"]
    # each rank ran half of each global batch of 4 (after the DDP probe's 2-clip forward); 21 clips = 5 x 4 + 1
    assert ranks[0]["batch_sizes"] == [2] + ([2] * 5 + [1]) * 2
    assert ranks[1]["batch_sizes"] == [2] + ([2] * 5 + [1]) * 2  # its last batch is the zero-weight padding item
    assert reference["batch_sizes"] == ([4] * 5 + [1]) * 2
    # rank 0 wrote the checkpoint, which holds the selected state
    latest = json.loads((tmp_path / "checkpoint" / "latest.json").read_text())
    best = load_file(str(tmp_path / "checkpoint" / latest["best"]))
    assert all(torch.equal(best[n], ranks[0]["state"][n]) for n in best)


@pytest.mark.parametrize(("size", "batch", "world"), [(21, 4, 2), (24, 6, 3), (5, 4, 4), (9, 8, 2)])
def test_rank_shards_tile_the_one_process_batches(size, batch, world):
    single = EpochSampler(size, True, seed=3)
    single.set_epoch(2)
    order = list(single)
    expected = [order[i : i + batch] for i in range(0, size, batch)]
    shards = []
    for rank in range(world):
        sampler = EpochSampler(size, True, seed=3)
        sampler.set_epoch(2)
        shards.append(ShardBatchSampler(sampler, batch, rank, world))
    per_rank = [list(s) for s in shards]
    assert all(len(s) == len(expected) for s in shards)
    for step, want in enumerate(expected):
        real = [shards[r].real_count(step) for r in range(world)]
        got = [item for r in range(world) for item in per_rank[r][step][: real[r]]]
        assert got == want
        assert max(real) - min(real) <= 1
        assert all(len(per_rank[r][step]) == max(real[r], 1) for r in range(world))  # an empty shard pads one item


def test_shard_bounds_split_evenly():
    assert [shard_bounds(5, 2, r) for r in range(2)] == [(0, 3), (3, 5)]
    assert [shard_bounds(1, 3, r) for r in range(3)] == [(0, 1), (1, 1), (1, 1)]


def test_environment_detection_and_errors():
    assert DistEnv.from_environ({}) == DistEnv() and not DistEnv().enabled
    env = DistEnv.from_environ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2) and not env.is_main
    assert env.device("cuda") == "cuda:1" and env.device("cpu") == "cpu" and DistEnv().device("cuda:1") == "cuda:1"
    with pytest.raises(ValueError, match="set training.device=cuda"):
        env.device("cuda:0")
    with pytest.raises(KeyError, match="torchrun"):
        DistEnv.from_environ({"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="RANK='x'"):
        DistEnv.from_environ({"WORLD_SIZE": "2", "RANK": "x"})
    with pytest.raises(ValueError, match="inconsistent"):
        DistEnv.from_environ({"WORLD_SIZE": "2", "RANK": "2"})
    assert env.shard_size(8) == 2
    with pytest.raises(ValueError, match="batch_size=8 or training.batch_size=12"):
        env.shard_size(10)
    with pytest.raises(ValueError, match=r"use training.batch_size=4, or another --nproc_per_node"):
        DistEnv(0, 4).shard_size(3)
    with pytest.raises(ValueError, match="must split evenly"):
        make_shard_loader(ddp_worker.Clips(6, 0), 5, True, 0, DistEnv(0, 2))


def test_shard_loader_reads_the_same_items_as_the_one_process_loader():
    data = ddp_worker.Clips(7, 0)
    full = make_loader(data, 4, True, seed=1, num_workers=0)
    full.set_epoch(1)
    want = [(w.clone(), y.clone()) for w, y in full]
    got = []
    for rank in (0, 1):
        loader = make_shard_loader(data, 4, True, 1, DistEnv(rank, 2), num_workers=0)
        loader.set_epoch(1)
        got.append([(w[: loader.real_count(s)], y[: loader.real_count(s)]) for s, (w, y) in enumerate(loader)])
    for step, (wave, target) in enumerate(want):
        assert torch.equal(torch.cat([got[0][step][0], got[1][step][0]]), wave)  # same crops of epoch 1
        assert torch.equal(torch.cat([got[0][step][1], got[1][step][1]]), target)


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_global_mean_loss_is_the_weighted_mean(one_process_group):
    """The padding case (a rank with no data, zero weight) is covered by the two-process test's last batch."""
    torch.manual_seed(0)
    weight = torch.tensor([0.5, 2.0, 1.0])
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    logits = torch.randn(5, 3, requires_grad=True)
    target = torch.tensor([0, 1, 2, 1, 0])
    loss, part, count = global_mean_loss(logits, target, 5, loss_fn, world_size=1)
    torch.testing.assert_close(loss, loss_fn(logits, target))
    assert part == pytest.approx(float(loss.detach())) and count == 5
    # a 2-rank split of the same batch: each rank's loss is 2 * its sum / the global sum of weights; DDP
    # averages the two, which is the weighted mean (a mean of the two per-rank means is not)
    denominator = float(weight[target].sum())
    shares = [F.cross_entropy(logits[s], target[s], weight, reduction="sum", label_smoothing=0.1).detach()
              for s in (slice(0, 3), slice(3, 5))]
    assert float(sum(2 * s / denominator for s in shares)) / 2 == pytest.approx(float(loss.detach()))
    means = [loss_fn(logits[s], target[s]).detach() for s in (slice(0, 3), slice(3, 5))]
    assert float(sum(means)) / 2 != pytest.approx(float(loss.detach()), abs=1e-3)


class _Branchy(nn.Module):
    def __init__(self, use_extra: bool) -> None:
        super().__init__()
        self.used, self.extra, self.use_extra = nn.Linear(4, 2), nn.Linear(4, 2), use_extra
        self.frozen = nn.Linear(4, 4).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.frozen(x)
        return self.used(h) + (self.extra(h) if self.use_extra else 0)


def test_ddp_finds_unused_parameters_only_when_needed(one_process_group):
    x = torch.randn(3, 4)
    assert unused_parameters(_Branchy(False), x) == ["extra.weight", "extra.bias"]
    assert unused_parameters(_Branchy(True), x) == []
    assert wrap_model(_Branchy(False), DistEnv(), "cpu", x).find_unused_parameters
    assert not wrap_model(_Branchy(True), DistEnv(), "cpu", x).find_unused_parameters
    layerdrop = _Branchy(True)
    layerdrop.layerdrop = 0.1  # as a transformers encoder in training mode
    assert wrap_model(layerdrop, DistEnv(), "cpu", x).find_unused_parameters
    assert not wrap_model(layerdrop.eval(), DistEnv(), "cpu", x).find_unused_parameters
