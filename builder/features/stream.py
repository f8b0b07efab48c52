"""Passes over a whole (N, D) feature matrix in bounded memory.

The corpus features are memory-mapped from features.npy (5.1 GB at 1M images x 1280 float32).
A pass over a mapping leaves every page it touched in the process's resident set, so a 1M-image
build held the whole file after its first pass (scores, logits, the leakage projection) and a
14.2M one would hold 73 GB. `row_chunks` reads the matrix a chunk of rows at a time and, for a
memory-mapped one, hands the chunk's pages back to the kernel (MADV_DONTNEED: they stay in the
page cache; a later read faults them in again) before the next chunk, so a pass holds one chunk.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

DEFAULT_ROWS = 8192  # rows per chunk: 40 MB of 1280-d float32


def row_chunks(features: np.ndarray, rows: int = DEFAULT_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(start, features[start : start + rows] as float32) over every row, in order. The chunk
    is valid until the next one is asked for (its pages may be released then)."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    for start in range(0, features.shape[0], rows):
        view = features[start : start + rows]
        yield start, np.asarray(view, dtype=np.float32)
        release(view)


def release(view: np.ndarray) -> None:
    """Drop the resident pages of a slice of a memory-mapped array (no-op for other arrays).

    Safe for a read-only file mapping: the data stays in the file and the page cache, and a
    later access faults the page in again."""
    mapping = getattr(view, "_mmap", None)
    if not isinstance(mapping, mmap.mmap) or view.nbytes == 0 or mapping.closed:
        return
    base = np.frombuffer(mapping, dtype=np.uint8, count=1).ctypes.data  # the mapping's address
    lo = view.ctypes.data - base
    hi = lo + view.nbytes
    page = mmap.PAGESIZE
    lo -= lo % page
    hi = min(len(mapping), -(-hi // page) * page)
    if 0 <= lo < hi:
        mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def take_rows(features: np.ndarray, indices: np.ndarray, rows: int = DEFAULT_ROWS) -> np.ndarray:
    """(len(indices), D) float32 = features[indices], in bounded memory for a mapped matrix.

    A gather of 20,000 scattered rows from a mapping faults in their pages and the kernel maps
    the cached pages around each fault too, so it left most of the file resident. The indices are
    taken one window of `rows` rows at a time, and each window's pages are released after it."""
    idx = np.asarray(indices, dtype=np.int64)
    if not isinstance(getattr(features, "_mmap", None), mmap.mmap):
        out: np.ndarray = np.asarray(features[idx], dtype=np.float32)
        return out
    gathered = np.empty((idx.size, features.shape[1]), dtype=np.float32)
    order = np.argsort(idx, kind="stable")
    ordered = idx[order]
    edges = np.searchsorted(ordered, np.arange(0, features.shape[0] + rows, rows))
    for window in range(edges.size - 1):
        lo, hi = int(edges[window]), int(edges[window + 1])
        if lo == hi:
            continue
        gathered[order[lo:hi]] = features[ordered[lo:hi]]
        release(features[window * rows : (window + 1) * rows])
    return gathered


def column_mean(features: np.ndarray, rows: int = DEFAULT_ROWS) -> np.ndarray:
    """(D,) float64 mean of the rows, streamed."""
    total = np.zeros(features.shape[1], dtype=np.float64)
    for _, chunk in row_chunks(features, rows):
        total += chunk.sum(axis=0, dtype=np.float64)
    out: np.ndarray = total / max(features.shape[0], 1)
    return out
