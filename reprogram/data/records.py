"""A dataset is recordings plus a table; a task is a label column plus a grouping column.

Every loader (manifest CSV, Raven selection tables, Hainan start/end CSVs, folder-per-class, the
synthetic corpus) produces the same thing: a :class:`ClipTable` of :class:`ClipRecord` rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

#: key of a decoded clip in a cache: (path, start_s, end_s, sample_rate).
CacheKey = tuple[str, float | None, float | None, int]


def cache_key(record: ClipRecord, sample_rate: int) -> CacheKey:
    """Cache key of a record's decoded waveform at ``sample_rate``."""
    return (record.path, record.start_s, record.end_s, int(sample_rate))


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip: a whole file or a segment of one.

    Attributes:
        path: absolute path of the audio file.
        label: the task's label (``None`` when the table has none, e.g. unlabelled audio).
        groups: grouping variables (``{"recorder": "S10", "site": "DK"}``) used by grouped splits.
        start_s: segment start in seconds within the file (``None``: start of file).
        end_s: segment end in seconds (``None``: end of file).
        source: where the row came from, for error messages (``"manifest.csv:12"``).
        meta: any other columns of the row, as strings.
    """

    path: str
    label: str | None
    groups: Mapping[str, str] = field(default_factory=dict)
    start_s: float | None = None
    end_s: float | None = None
    source: str = ""
    meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        """Segment length in seconds when both ends are known."""
        if self.start_s is None or self.end_s is None:
            return None
        return self.end_s - self.start_s


@dataclass
class ClipTable:
    """An ordered table of clips with the names of its label and group columns.

    Attributes:
        records: the rows.
        label_column: name of the label column in the source table (for reports).
        group_columns: names of the grouping columns present in every record's ``groups``.
        name: a short name for reports (file or folder name).
        skipped: rows dropped under the ``skip`` policy, each ``(source, reason)``: reported, never silent.
        notes: warnings found while loading that did not drop a row (overlapping annotations, fewer background
            windows than asked), each ``(source, message)``.
    """

    records: list[ClipRecord]
    label_column: str = "label"
    group_columns: tuple[str, ...] = ()
    name: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)

    def __getitem__(self, i: int) -> ClipRecord:
        return self.records[i]

    @property
    def labels(self) -> list[str | None]:
        return [r.label for r in self.records]

    @property
    def classes(self) -> list[str]:
        """Sorted distinct labels; the index of a class here is its integer target."""
        return sorted({r.label for r in self.records if r.label is not None})

    def targets(self, classes: Sequence[str] | None = None) -> list[int]:
        """Integer targets in the order of ``classes`` (default: :attr:`classes`)."""
        index = {c: i for i, c in enumerate(classes or self.classes)}
        missing = sorted({r.label for r in self.records if r.label not in index}, key=str)
        if missing:
            raise ValueError(f"labels {missing} are not among the classes {list(index)}")
        return [index[r.label] for r in self.records]

    def group_values(self, column: str) -> list[str]:
        """The value of group ``column`` for every record."""
        if column not in self.group_columns:
            raise KeyError(f"no group column {column!r}; this table has {list(self.group_columns)}")
        return [r.groups[column] for r in self.records]

    def subset(self, indices: Sequence[int]) -> ClipTable:
        """A new table with the records at ``indices`` (same columns)."""
        return ClipTable(
            [self.records[i] for i in indices], self.label_column, self.group_columns, self.name, []
        )
