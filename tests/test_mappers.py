"""Label mappers on constructed source outputs: FLM/ILM recover known mappings, injectivity, exact counts."""

from __future__ import annotations

import pytest
import torch

from reprogram.mappers import (
    MAPPERS,
    FeatureHead,
    FrequencyMapping,
    IterativeMapping,
    LinearMapping,
    NotFittedError,
    RandomMapping,
    SemanticMapping,
)
from reprogram.mappers.frequency import frequency_assignment
from reprogram.spec import InputSpec


def constructed(true_map: list[int], num_sources: int = 30, per_class: int = 40, hit: float = 0.7, seed: int = 0):
    """Source logits whose top label is ``true_map[k]`` for a fraction ``hit`` of class-k examples, else random."""
    gen = torch.Generator().manual_seed(seed)
    K = len(true_map)
    targets = torch.arange(K).repeat_interleave(per_class)
    logits = torch.randn(len(targets), num_sources, generator=gen)
    hits = torch.rand(len(targets), generator=gen) < hit
    rows = torch.nonzero(hits).flatten()
    logits[rows, torch.tensor(true_map)[targets[rows]]] += 10.0
    perm = torch.randperm(len(targets), generator=gen)
    return logits[perm], targets[perm]


def test_flm_recovers_a_known_mapping():
    true_map = [17, 3, 25, 8, 11]
    logits, targets = constructed(true_map)
    flm = FrequencyMapping(30, 5)
    flm.fit(logits, targets)
    assert flm.assignment.flatten().tolist() == true_map
    out = flm(logits)
    assert out.shape == (len(logits), 5)
    assert torch.equal(out, logits[:, true_map])
    assert flm.trainable_parameters() == 0


def test_flm_assignment_is_optimal_and_injective_where_greedy_is_not():
    # Counts: class 0 prefers source 0 (10) then 1 (9); class 1 only ever predicts source 0 (9).
    # Greedy takes (0 -> class 0) and leaves class 1 with a never-predicted source: 10 hits. Optimal: 18.
    rows = [(0, 0)] * 10 + [(1, 0)] * 9 + [(0, 1)] * 9
    logits = torch.full((len(rows), 4), -5.0)
    targets = torch.tensor([k for _, k in rows])
    for i, (s, _) in enumerate(rows):
        logits[i, s] = 5.0
    assignment = frequency_assignment(logits, targets, num_targets=2, per_class=1)
    assert assignment.flatten().tolist() == [1, 0]


def test_many_to_one_frequency_mapping_is_injective():
    logits, targets = constructed([4, 9, 14], num_sources=20)
    flm = FrequencyMapping(20, 3, per_class=3)
    flm.fit(logits, targets)
    flat = flm.assignment.flatten()
    assert flat.unique().numel() == 9
    assert flm.assignment[:, 0].tolist() == [4, 9, 14]  # the first round is the one-to-one optimum
    with pytest.raises(ValueError, match="per_class"):
        FrequencyMapping(20, 3, per_class=7)


def test_ilm_refits_to_follow_the_program():
    ilm = IterativeMapping(30, 4)
    assert ilm.needs_fit and ilm.refit_every_epoch
    assert FrequencyMapping.refit_every_epoch is False
    before, tb = constructed([1, 2, 3, 4], seed=1)
    ilm.fit(before, tb)
    assert ilm.assignment.flatten().tolist() == [1, 2, 3, 4]
    after, ta = constructed([20, 21, 22, 5], seed=2)  # the program has moved: other source labels win now
    ilm.fit(after, ta)
    assert ilm.assignment.flatten().tolist() == [20, 21, 22, 5]


def test_unfitted_mapping_raises_and_bad_fit_input_is_named():
    flm = FrequencyMapping(10, 3)
    with pytest.raises(NotFittedError, match="fit_mapper"):
        flm(torch.randn(2, 10))
    with pytest.raises(ValueError, match="targets must lie"):
        flm.fit(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"\(M, 10\)"):
        flm.fit(torch.randn(4, 9), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="injective"):
        flm.set_assignment(torch.tensor([[1], [1], [2]]))


def test_random_mapping_is_fixed_many_to_one_and_seeded():
    a, b, c = RandomMapping(1000, 5), RandomMapping(1000, 5), RandomMapping(1000, 5, seed=1)
    assert a.assignment.shape == (5, 200) and a.assignment.unique().numel() == 1000
    assert torch.equal(a.assignment, b.assignment) and not torch.equal(a.assignment, c.assignment)
    assert a.trainable_parameters() == 0 and not a.needs_fit
    logits = torch.randn(3, 1000)
    torch.testing.assert_close(a(logits)[:, 2], logits[:, a.assignment[2]].mean(dim=1))
    assert RandomMapping(1000, 5, per_class=1).assignment.shape == (5, 1)


def test_linear_mapping_and_feature_head_counts():
    assert LinearMapping(1000, 5).trainable_parameters() == 1000 * 5 + 5
    assert LinearMapping(1000, 5, bias=False).trainable_parameters() == 5000
    head = FeatureHead(64, 3)
    assert head.input_kind == "features" and head.trainable_parameters() == 64 * 3 + 3


class _Spec:
    """The registry factories only read ``spec`` and ``name`` from a backbone."""

    def __init__(self, spec: InputSpec, name: str = "stand-in") -> None:
        self.spec, self.name = spec, name


def test_registry_reads_sizes_from_the_backbone_spec():
    labelled = _Spec(InputSpec("image", (3, 8, 8), label_names=tuple("abcdefgh"), feature_dim=16))
    unlabelled = _Spec(InputSpec("speech", (-1,), sample_rate=16000, feature_dim=32), "speechy")
    assert MAPPERS.create("linear", backbone=labelled, num_targets=3).num_sources == 8
    assert MAPPERS.create("feature_linear", backbone=labelled, num_targets=3).num_sources == 16
    assert MAPPERS.create("feature_linear", backbone=unlabelled, num_targets=3).num_sources == 32
    with pytest.raises(ValueError, match="feature_linear"):
        MAPPERS.create("flm", backbone=unlabelled, num_targets=3)
    with pytest.raises(ValueError, match="text encoder"):
        MAPPERS.create("semantic", backbone=labelled, num_targets=3, class_names=["a", "b", "c"])
    assert set(MAPPERS.names()) == {"random", "flm", "ilm", "linear", "semantic", "feature_linear"}


def test_semantic_mapping_is_a_cosine_zero_shot_head():
    emb = torch.nn.functional.normalize(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)), dim=-1)
    sem = SemanticMapping(emb, scale=10.0)
    assert sem.trainable_parameters() == 0 and sem.input_kind == "features"
    feats = 2.5 * emb  # feature k points at class k's text embedding
    out = sem(feats)
    assert out.argmax(dim=1).tolist() == [0, 1, 2]
    torch.testing.assert_close(out.diagonal(), torch.full((3,), 10.0))
    assert SemanticMapping(emb, trainable=True).trainable_parameters() == 3 * 16
