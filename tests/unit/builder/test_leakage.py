"""Leakage guard: near-copies of reference images in the test split are flagged."""

from __future__ import annotations

import numpy as np
import pytest

from builder.errors import BuilderError
from builder.pipeline.leakage import find_leakage


@pytest.mark.parametrize("exact", [True, False])
def test_find_leakage_flags_near_copies_only(exact: bool) -> None:
    # Prepare: 600 reference vectors in 160-d; test = 3 near-copies + 20 fresh vectors.
    rng = np.random.default_rng(0)
    ref = np.abs(rng.normal(0, 1, (600, 160))).astype(np.float32)
    copies = ref[[5, 77, 301]] * 1.01 + rng.normal(0, 0.01, (3, 160))
    fresh = np.abs(rng.normal(0, 1, (20, 160)))
    test = np.concatenate([copies, fresh]).astype(np.float32)
    # Execute
    result = find_leakage(test, ref, threshold=0.99, exact=exact)
    # Assert
    assert result.flagged.tolist() == [0, 1, 2]
    assert result.nearest_index[:3].tolist() == [5, 77, 301]
    assert result.num_flagged == 3
    assert np.all(result.nearest_cosine[3:] < 0.9)


def test_find_leakage_rejects_mismatched_dims() -> None:
    with pytest.raises(BuilderError, match="same encoder"):
        find_leakage(np.zeros((2, 3)), np.zeros((4, 5)))
