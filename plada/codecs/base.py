"""What every selection codec implements, and the per-class grouping several of them share."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from plada.errors import PayloadDecodeError


class Codec(Protocol):
    """Codes a sorted, unique index set with one label per index into bytes, and back exactly.

    `encode` gets validated arrays (int64, indices sorted ascending and unique, < n; labels
    < num_classes). `decode` gets untrusted bytes plus the envelope's n, num_classes and k (all
    already bounded) and returns int64 arrays; the registry validates them again afterwards.
    """

    name: str

    def encode(
        self, indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int
    ) -> bytes: ...

    def decode(
        self, data: bytes, *, n: int, num_classes: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]: ...


def label_width(num_classes: int) -> int:
    """The paper's label type: uint8 up to 256 classes, else uint16."""
    return 1 if num_classes <= 256 else 2


def group_by_class(
    indices: np.ndarray, labels: np.ndarray, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class gap lists: returns (counts (C,), gaps (k,)) with gaps >= 1, class after class.

    Each class's indices are sorted; its first gap is measured from -1, so gap = index + 1.
    """
    order = np.argsort(labels, kind="stable")  # indices are sorted, so each class stays sorted
    grouped = indices[order]  # (k,)
    counts = np.bincount(labels, minlength=num_classes).astype(np.int64)  # (C,)
    prev = np.empty_like(grouped)
    if len(grouped):
        prev[0] = -1
        prev[1:] = grouped[:-1]
        starts = (np.cumsum(counts) - counts)[counts > 0]
        prev[starts] = -1
    return counts, grouped - prev


def ungroup(
    counts: np.ndarray, gaps: np.ndarray, *, n: int, field: str
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of group_by_class: (indices, labels) sorted by index; gaps must be in 1..n."""
    if len(gaps) and (int(gaps.min()) < 1 or int(gaps.max()) > n):
        raise PayloadDecodeError(f"{field}: gap out of range 1..{n}")
    cs = np.cumsum(gaps)  # <= k * n < 2**54: no overflow
    ends = np.cumsum(counts)
    base = np.concatenate(([0], cs))[ends - counts]  # (C,) running sum before each class
    indices = cs - np.repeat(base, counts) - 1
    labels = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    order = np.argsort(indices, kind="stable")
    return indices[order], labels[order]


def global_gaps(indices: np.ndarray) -> np.ndarray:
    """Gaps of the sorted index list, the first from -1 (so every gap is >= 1)."""
    return np.diff(indices, prepend=-1)


def label_runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-length form of a label sequence: (run lengths >= 1, run labels)."""
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.diff(labels, prepend=labels[0] - 1))
    lengths = np.diff(starts, append=len(labels))
    return lengths.astype(np.int64), labels[starts].astype(np.int64)
