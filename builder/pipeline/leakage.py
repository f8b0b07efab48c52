"""Leakage guard: target test images whose nearest reference image is (nearly) the same picture.

md5 de-duplication was not enough on openclipart: 17 % of one held-out split had a reference image
at feature cosine > 0.99, and that inflated a teacher by 10 points. The report therefore flags every
test image whose nearest reference image, by cosine of the (raw, pooled) encoder features, is above
a threshold.

An exact search is (test x N x D) multiply-adds: 9,000 x 83,000 x 1,280 is about 1e12, too slow for
a one-minute build. So candidates are found in a PCA projection of the reference features (the top
components carry nearly all the variance) and the best few are re-scored exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from builder.errors import BuilderError
from builder.features.sources import TaskFeatures
from builder.features.stream import row_chunks, take_rows
from plada.ordered_pool import map_ordered, worker_count

DEFAULT_THRESHOLD = 0.99
_PCA_DIM = 128
_RERANK = 4
_PCA_SAMPLE = 4096
_APPROX_FLOATS = 1 << 25  # at most this many approximate similarities per batch (128 MB)
# The candidate search finds each test image's best _RERANK columns among blocks of this many
# (_top_columns); padding columns score this, below any approximate cosine.
_BLOCK = 64
_PAD_SCORE = -3.0e38


@dataclass(frozen=True)
class LeakageResult:
    threshold: float
    nearest_index: np.ndarray  # (T,) int64, nearest reference image of each test image
    nearest_cosine: np.ndarray  # (T,) float32, its exact cosine

    @property
    def flagged(self) -> np.ndarray:
        """Positions (into the test split) above the threshold."""
        return np.flatnonzero(self.nearest_cosine > self.threshold)

    @property
    def num_flagged(self) -> int:
        return int(self.flagged.shape[0])


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    out: np.ndarray = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return out


# Rows of the reference features normalised at a time: a unit-norm copy of a whole 80k x 1280
# corpus would cost another 400 MB, and the builder must stay under 4 GB.
_CHUNK = 8192

_PROJECTION: list[tuple[np.ndarray, tuple[np.ndarray, ...]]] = []
# The last search, keyed by reference array identity and test-feature digest: make builder and
# the bench build one task at several budgets and seeds against the same corpus features.
_RESULT: list[tuple[np.ndarray, bytes, tuple[np.ndarray, np.ndarray]]] = []


def _projection(reference_features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of the unit reference vectors: (center (D,), basis (D, P), ref_p (N', P + 1)), N'
    the corpus size rounded up to whole blocks of _BLOCK rows (padding rows score _PAD_SCORE).

    approx cosine(t, r) = (t - center) @ basis @ ref_p.T + r @ center, and r @ center is folded
    into ref_p as its last column (t's is 1), so the search is one matmul per batch.
    """
    if _PROJECTION and _PROJECTION[0][0] is reference_features:
        center, basis, ref_p = _PROJECTION[0][1]
        return center, basis, ref_p
    n = reference_features.shape[0]
    stride = np.arange(0, n, max(1, n // _PCA_SAMPLE))  # even stride: deterministic
    sample = _unit(take_rows(reference_features, stride))
    center = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - center, full_matrices=False)
    basis = vt[:_PCA_DIM].T.astype(np.float32)  # (D, P)
    # rows padded to whole blocks (_top_columns) with a score every real column beats
    padded = -(-n // _BLOCK) * _BLOCK
    ref_p = np.zeros((padded, basis.shape[1] + 1), dtype=np.float32)  # (N padded, P + 1)
    ref_p[n:, -1] = _PAD_SCORE
    for start, chunk in row_chunks(reference_features, _CHUNK):  # pages released as it goes
        stop = start + chunk.shape[0]
        unit = _unit(chunk)
        ref_p[start:stop, :-1] = (unit - center) @ basis
        ref_p[start:stop, -1] = unit @ center
    _PROJECTION[:] = [(reference_features, (center, basis, ref_p))]
    return center, basis, ref_p


def _top_columns(approx: np.ndarray, k: int) -> np.ndarray:
    """(B, k) columns of the k largest values of each row of approx (B, W), W a multiple of
    _BLOCK, in no particular order.

    A partial sort of every 83,000-column row was most of the leakage stage (1.9 of 2.2 s per
    batch of 256 test images). The k largest values lie in the k blocks of _BLOCK columns with
    the largest maxima: a block holding one of them has a maximum at least the k-th largest
    value, and at most k blocks can (ties aside, which a partial sort also breaks arbitrarily).
    So the partial sort runs over the block maxima and then over k * _BLOCK columns."""
    rows, width = approx.shape
    blocks = width // _BLOCK
    if blocks <= k:
        out: np.ndarray = np.argpartition(-approx, k - 1, axis=1)[:, :k]
        return out
    block_max = approx.reshape(rows, blocks, _BLOCK).max(axis=2)  # (B, W / _BLOCK)
    top_blocks = np.argpartition(-block_max, k - 1, axis=1)[:, :k]  # (B, k)
    columns = (top_blocks[:, :, None] * _BLOCK + np.arange(_BLOCK)).reshape(rows, k * _BLOCK)
    values = np.take_along_axis(approx, columns, axis=1)  # (B, k * _BLOCK)
    best = np.argpartition(-values, k - 1, axis=1)[:, :k]
    top: np.ndarray = np.take_along_axis(columns, best, axis=1)
    return top


def _exact_nearest(test: np.ndarray, reference_features: np.ndarray) -> tuple[np.ndarray, ...]:
    """(nearest (T,), cosine (T,)) by brute force over reference chunks."""
    nearest = np.zeros(test.shape[0], dtype=np.int64)
    best = np.full(test.shape[0], -np.inf, dtype=np.float32)
    for start, chunk in row_chunks(reference_features, _CHUNK):
        sims = test @ _unit(chunk).T  # (T, chunk)
        arg = sims.argmax(axis=1)
        top = sims[np.arange(test.shape[0]), arg]
        better = top > best
        nearest[better] = start + arg[better]
        best[better] = top[better]
    return nearest, best


def find_leakage(
    test_features: np.ndarray,
    reference_features: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = 256,
    exact: bool | None = None,
    workers: int | None = None,
) -> LeakageResult:
    """Nearest reference image (cosine) of every test image; exact when small or asked. The
    approximate search runs its batches on `workers` threads (default: one per core)."""
    if test_features.ndim != 2 or reference_features.ndim != 2:
        raise BuilderError("leakage check needs 2-D feature arrays")
    if test_features.shape[1] != reference_features.shape[1]:
        raise BuilderError(
            f"test features have {test_features.shape[1]} dims, reference features "
            f"{reference_features.shape[1]}: they must come from the same encoder"
        )
    test = _unit(test_features)  # (T, D)
    n, d = reference_features.shape
    if exact is None:
        exact = d <= _PCA_DIM or n <= 4 * _PCA_DIM
    if exact:
        nearest, best = _exact_nearest(test, reference_features)
        return LeakageResult(threshold, nearest, best)
    key = hashlib.sha256(np.ascontiguousarray(test_features, dtype=np.float32).tobytes()).digest()
    if _RESULT and _RESULT[0][0] is reference_features and _RESULT[0][1] == key:
        nearest, best = _RESULT[0][2]  # another budget or seed of the same task
        return LeakageResult(threshold, nearest, best)
    center, basis, ref_p = _projection(reference_features)
    k = min(_RERANK, n)
    # the (B, N) approximate similarities are the largest temporary: 1 GB for 256 test images
    # against 1M references, so the batch shrinks as the corpus grows (same result, by row)
    batch_size = max(1, min(batch_size, _APPROX_FLOATS // ref_p.shape[0]))

    def search(start: int) -> tuple[np.ndarray, np.ndarray]:
        t = test[start : start + batch_size]
        t_p = np.concatenate([(t - center) @ basis, np.ones((t.shape[0], 1), np.float32)], axis=1)
        approx = t_p @ ref_p.T  # (B, N)
        if k == 1:  # argmax is several times faster than a partial sort over 80k columns
            cand = approx.argmax(axis=1)[:, None]  # (B, 1)
        else:
            cand = np.sort(_top_columns(approx, k), axis=1)  # (B, k); ties: lowest index
        rows_needed = np.unique(cand)
        unit = _unit(take_rows(reference_features, rows_needed))  # only the candidates, (U, D)
        exact_sims = np.einsum("bd,bkd->bk", t, unit[np.searchsorted(rows_needed, cand)])
        pick = exact_sims.argmax(axis=1)
        rows = np.arange(t.shape[0])
        return cand[rows, pick], exact_sims[rows, pick]

    # batches on a thread per core: the builder runs its stages with one BLAS thread, and the
    # matmuls and partial sorts release the GIL (each batch's rows are computed as on one thread)
    starts = range(0, test.shape[0], batch_size)
    threads = worker_count(workers)
    found = list(map_ordered(search, starts, workers=threads, ahead=threads, name="leakage"))
    nearest = np.concatenate([f[0] for f in found]) if found else np.empty(0, np.int64)
    best = np.concatenate([f[1] for f in found]) if found else np.empty(0, np.float32)
    _RESULT[:] = [(reference_features, key, (nearest, best))]
    return LeakageResult(threshold, nearest, best)


@dataclass(frozen=True)
class LeakageExample:
    test_image: Path
    reference_index: int
    cosine: float


@dataclass(frozen=True)
class LeakageCheck:
    """The leakage stage's record: the search, its worst cases, and the teacher without them."""

    result: LeakageResult
    examples: list[LeakageExample]  # the most similar flagged test images first, at most 20
    teacher_accuracy_without_leaked: float | None  # None when every test image is flagged


def check_leakage(
    features: TaskFeatures,
    test_paths: Sequence[Path],
    test_labels: np.ndarray,
    teacher_predictions: np.ndarray,  # (n_test,) the teacher's classes for the test split
    *,
    threshold: float,
) -> LeakageCheck:
    """Flag test images with a near-copy in the corpus (teacher-encoder features)."""
    result = find_leakage(features.test, features.reference, threshold=threshold)
    flagged = result.flagged
    worst = flagged[np.argsort(-result.nearest_cosine[flagged])][:20]
    examples = [
        LeakageExample(
            Path(test_paths[int(t)]), int(result.nearest_index[t]), float(result.nearest_cosine[t])
        )
        for t in worst
    ]
    clean = np.setdiff1d(np.arange(len(test_labels)), flagged)
    accuracy = (
        float(np.mean(teacher_predictions[clean] == test_labels[clean])) if len(clean) else None
    )
    return LeakageCheck(result, examples, accuracy)
