"""Features of several teacher encoders as one feature space.

Each encoder's block is standardised with its target train split's mean and standard deviation
and divided by sqrt(its width), so every encoder carries the same total weight in the cosines
that use these features (prototype scores, leakage) whatever its width or scale; the teachers
standardise again per dimension, so for them only the concatenation matters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from builder.errors import BuilderError
from builder.features.sources import TaskFeatures


@dataclass(frozen=True)
class BlockScaler:
    """The per-encoder affine maps of one concatenation, fitted on the train split."""

    means: tuple[np.ndarray, ...]
    scales: tuple[np.ndarray, ...]

    @classmethod
    def fit(cls, train_blocks: Sequence[np.ndarray]) -> BlockScaler:
        if not train_blocks:
            raise BuilderError("a concatenation needs at least one encoder's features")
        means, scales = [], []
        for block in train_blocks:
            x = np.asarray(block, dtype=np.float64)
            std = np.maximum(x.std(axis=0), 1e-6)
            means.append(x.mean(axis=0).astype(np.float32))
            scales.append((1.0 / (std * np.sqrt(x.shape[1]))).astype(np.float32))
        return cls(tuple(means), tuple(scales))

    def apply(self, blocks: Sequence[np.ndarray], *, batch_size: int = 8192) -> np.ndarray:
        """(N, sum of widths) float32, filled in batches so a corpus is not copied per block."""
        if len(blocks) != len(self.means):
            raise BuilderError(f"{len(blocks)} feature blocks for {len(self.means)} encoders")
        rows = {int(b.shape[0]) for b in blocks}
        if len(rows) != 1:
            raise BuilderError(f"feature blocks disagree on the number of images: {sorted(rows)}")
        n = rows.pop()
        widths = [int(m.shape[0]) for m in self.means]
        out = np.empty((n, sum(widths)), dtype=np.float32)
        for start in range(0, n, batch_size):
            col = 0
            for block, mean, scale, width in zip(
                blocks, self.means, self.scales, widths, strict=True
            ):
                chunk = np.asarray(block[start : start + batch_size], dtype=np.float32)
                out[start : start + batch_size, col : col + width] = (chunk - mean) * scale
                col += width
        return out


def concat_name(encoders: Sequence[str]) -> str:
    return "+".join(encoders)


def concat_features(features: Sequence[TaskFeatures]) -> tuple[TaskFeatures, BlockScaler]:
    """One TaskFeatures over every encoder's features, and the scaler (for augmented images)."""
    scaler = BlockScaler.fit([f.train for f in features])
    joined = TaskFeatures(
        encoder=concat_name([f.encoder for f in features]),
        reference=scaler.apply([f.reference for f in features]),
        train=scaler.apply([f.train for f in features]),
        test=scaler.apply([f.test for f in features]),
    )
    return joined, scaler
