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

from dataclasses import dataclass

import numpy as np

from builder.errors import BuilderError

DEFAULT_THRESHOLD = 0.99
_PCA_DIM = 128
_RERANK = 4
_PCA_SAMPLE = 4096


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


# One projected corpus kept between calls (several budgets or seeds of a build share it); the
# array object itself is the key, held here so its id cannot be reused.
_PROJECTION: list[tuple[np.ndarray, tuple[np.ndarray, ...]]] = []


def _projection(
    reference_features: np.ndarray, ref: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PCA of the unit reference vectors: (center, basis (D, P), ref_p (N, P), ref_bias (1, N))."""
    if _PROJECTION and _PROJECTION[0][0] is reference_features:
        center, basis, ref_p, ref_bias = _PROJECTION[0][1]
        return center, basis, ref_p, ref_bias
    n = ref.shape[0]
    center = ref.mean(axis=0)
    sample = ref[:: max(1, n // _PCA_SAMPLE)] - center  # an even stride: deterministic
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    basis = vt[:_PCA_DIM].T.astype(np.float32)  # (D, P)
    ref_p = (ref - center) @ basis  # (N, P)
    # t.r = (t-c).(r-c) + c.r + (terms constant per test row); keep c.r, it varies per reference.
    ref_bias = (ref @ center)[None, :]  # (1, N)
    _PROJECTION[:] = [(reference_features, (center, basis, ref_p, ref_bias))]
    return center, basis, ref_p, ref_bias


def find_leakage(
    test_features: np.ndarray,
    reference_features: np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = 1024,
    exact: bool | None = None,
) -> LeakageResult:
    """Nearest reference image (cosine) of every test image; exact when small or asked."""
    if test_features.ndim != 2 or reference_features.ndim != 2:
        raise BuilderError("leakage check needs 2-D feature arrays")
    if test_features.shape[1] != reference_features.shape[1]:
        raise BuilderError(
            f"test features have {test_features.shape[1]} dims, reference features "
            f"{reference_features.shape[1]}: they must come from the same encoder"
        )
    ref = _unit(reference_features)  # (N, D)
    test = _unit(test_features)  # (T, D)
    n, d = ref.shape
    if exact is None:
        exact = d <= _PCA_DIM or n <= 4 * _PCA_DIM
    nearest = np.empty(test.shape[0], dtype=np.int64)
    best = np.empty(test.shape[0], dtype=np.float32)
    if exact:
        for start in range(0, test.shape[0], batch_size):
            sims = test[start : start + batch_size] @ ref.T  # (B, N)
            nearest[start : start + batch_size] = sims.argmax(axis=1)
            best[start : start + batch_size] = sims.max(axis=1)
        return LeakageResult(threshold, nearest, best)
    center, basis, ref_p, ref_bias = _projection(reference_features, ref)
    k = min(_RERANK, n)
    for start in range(0, test.shape[0], batch_size):
        t = test[start : start + batch_size]
        approx = ((t - center) @ basis) @ ref_p.T + ref_bias  # (B, N)
        if k == 1:  # argmax is several times faster than a partial sort over 80k columns
            cand = approx.argmax(axis=1)[:, None]  # (B, 1)
        else:
            cand = np.argpartition(-approx, k - 1, axis=1)[:, :k]  # (B, k)
        exact_sims = np.einsum("bd,bkd->bk", t, ref[cand])  # (B, k)
        pick = exact_sims.argmax(axis=1)
        rows = np.arange(t.shape[0])
        nearest[start : start + batch_size] = cand[rows, pick]
        best[start : start + batch_size] = exact_sims[rows, pick]
    return LeakageResult(threshold, nearest, best)
