"""Grouped and stratified splits: no group in two parts, every class covered, deterministic, clear errors."""

from __future__ import annotations

import pytest

from reprogram.data.records import ClipRecord, ClipTable
from reprogram.data.splits import (
    format_split_report,
    grouped_kfold,
    grouped_split,
    leave_one_group_out,
    split_report,
    stratified_kfold,
)


def make_table(counts: dict[tuple[str, str], int]) -> ClipTable:
    """A table with ``counts[(group, label)]`` clips (splits never read audio, so paths are names only)."""
    records = [ClipRecord(f"{g}_{lab}_{i}.wav", lab, {"recorder": g}, source=f"t.csv:{n}")
               for n, ((g, lab), k) in enumerate(counts.items()) for i in range(k)]
    return ClipTable(records, "label", ("recorder",), "t")


@pytest.fixture
def table() -> ClipTable:
    counts = {}
    for i in range(8):
        counts[(f"R{i}", "call")] = 10 + i
        counts[(f"R{i}", "noise")] = 12
        if i % 2:
            counts[(f"R{i}", "rare")] = 2
    return make_table(counts)


def parts_groups(table: ClipTable, split) -> dict[str, set[str]]:
    return {p: {table[i].groups["recorder"] for i in idx} for p, idx in split.parts().items()}


def test_grouped_split_keeps_groups_apart_covers_classes_and_is_deterministic(table):
    split = grouped_split(table, "recorder", (0.6, 0.2, 0.2), seed=0)
    g = parts_groups(table, split)
    assert not (g["train"] & g["val"] or g["train"] & g["test"] or g["val"] & g["test"])
    assert sorted(split.train + split.val + split.test) == list(range(len(table)))
    for idx in split.parts().values():
        assert {table[i].label for i in idx} == {"call", "noise", "rare"}
    assert len(split.train) > len(split.val) and len(split.train) > len(split.test)
    assert grouped_split(table, "recorder", seed=0) == split
    others = {tuple(grouped_split(table, "recorder", seed=s).test) for s in range(5)}
    assert len(others) > 1
    report = split_report(table, split, "recorder")
    assert report["shared_groups"] == [] and report["missing"] == []
    assert sum(report["parts"]["train"]["per_class"].values()) == len(split.train)
    assert "rare" in format_split_report(report)


def test_impossible_stratification_names_class_and_groups():
    table = make_table({("A", "x"): 5, ("B", "x"): 5, ("C", "x"): 5, ("A", "y"): 3, ("B", "y"): 2})
    with pytest.raises(ValueError, match=r"class 'y'.*\['A', 'B'\].*Fix:.*split.kind=logo"):
        grouped_split(table, "recorder")
    split = grouped_split(table, "recorder", stratify=False)
    assert len(parts_groups(table, split)["val"]) == 1
    two = grouped_split(table, "recorder", (0.5, 0.5, 0.0))  # train/val only; y is in two groups
    assert two.test == [] and {table[i].label for i in two.val} == {"x", "y"}


def test_split_input_errors(table):
    with pytest.raises(ValueError, match="validation"):
        grouped_split(table, "recorder", (0.8, 0.0, 0.2))
    with pytest.raises(ValueError, match="sum"):
        grouped_split(table, "recorder", (0.6, 0.2, 0.1))
    with pytest.raises(ValueError, match="split.kind=logo or split.kind=group_kfold"):
        grouped_split(make_table({("A", "x"): 4, ("B", "x"): 4}), "recorder")
    with pytest.raises(KeyError, match="site"):
        grouped_split(table, "site")


def test_stratified_kfold_partitions_and_rotates_validation(table):
    folds = stratified_kfold(table, k=4, seed=1)
    tests = [i for f in folds for i in f.test]
    assert sorted(tests) == list(range(len(table)))
    for n, f in enumerate(folds):
        assert not set(f.train) & set(f.val) and not set(f.train) & set(f.test) and not set(f.val) & set(f.test)
        assert f.val == folds[(n + 1) % 4].test
        assert len(f.train) + len(f.val) + len(f.test) == len(table)
    assert stratified_kfold(table, k=4, seed=1) == folds
    with pytest.raises(ValueError, match="rare"):
        stratified_kfold(table, k=10)


def test_grouped_kfold_and_leave_one_group_out(table):
    folds = grouped_kfold(table, "recorder", k=4, seed=0)
    assert sorted(i for f in folds for i in f.test) == list(range(len(table)))
    for f in folds:
        g = parts_groups(table, f)
        assert not (g["train"] & g["val"] or g["train"] & g["test"] or g["val"] & g["test"])
    assert grouped_kfold(table, "recorder", k=4, seed=0) == folds
    with pytest.raises(ValueError, match="9 grouped folds"):
        grouped_kfold(table, "recorder", k=9)
    logo = leave_one_group_out(table, "recorder", val_fraction=0.25, seed=3)
    assert [parts_groups(table, s)["test"] for s in logo] == [{f"R{i}"} for i in range(8)]
    assert logo[0].name.endswith("test=R0") and leave_one_group_out(table, "recorder", 0.25, seed=3) == logo
    for s in logo:
        g = parts_groups(table, s)
        assert g["val"] and not (g["train"] & g["val"] or g["train"] & g["test"] or g["val"] & g["test"])
        assert {table[i].label for i in s.val} == {"call", "noise", "rare"}  # rare is in 4 of the 7 others
        assert sorted(s.train + s.val + s.test) == list(range(len(table)))
    no_val = leave_one_group_out(table, "recorder", val_fraction=0)
    assert all(s.val == [] and len(s.train) + len(s.test) == len(table) for s in no_val)


def test_classes_nested_in_groups_get_the_within_group_advice(capsys):
    table = make_table({("A", "x"): 5, ("B", "y"): 5, ("C", "z"): 5})
    with pytest.raises(ValueError, match="every class lies within a single recorder.*stratified_kfold"):
        grouped_split(table, "recorder")
