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


@pytest.mark.parametrize("width", [64 * 3, 64 * 40])
def test_the_block_search_finds_the_same_top_columns_as_a_full_sort(width: int) -> None:
    # Prepare: rows with a few large values in random places, some in one block
    from builder.pipeline.leakage import _top_columns

    rng = np.random.default_rng(width)
    approx = rng.normal(0, 1, (50, width)).astype(np.float32)
    approx[:, 7] += 5
    approx[:, 9] += 4  # the same block as column 7
    # Execute
    top = _top_columns(approx, 4)
    # Assert: the same set per row as a full sort
    full = np.argsort(-approx, axis=1)[:, :4]
    np.testing.assert_array_equal(np.sort(top, axis=1), np.sort(full, axis=1))


def test_the_block_search_leaves_the_leakage_result_as_a_full_sort_gives_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: 2,000 reference vectors around 50 centres, 20 test images copied from them
    import builder.pipeline.leakage as leakage

    rng = np.random.default_rng(3)
    centres = rng.normal(0, 1, (50, 200))
    ref = centres[rng.integers(0, 50, 2000)] + 0.3 * rng.normal(0, 1, (2000, 200))
    test = centres[rng.integers(0, 50, 300)] + 0.3 * rng.normal(0, 1, (300, 200))
    test[:20] = ref[:20]
    ref, test = ref.astype(np.float32), test.astype(np.float32)
    # Execute
    blocks = find_leakage(test, ref, exact=False)
    leakage._PROJECTION.clear()
    leakage._RESULT.clear()
    monkeypatch.setattr(
        leakage, "_top_columns", lambda a, k: np.argpartition(-a, k - 1, axis=1)[:, :k]
    )
    full = find_leakage(test, ref, exact=False)
    # Assert
    np.testing.assert_array_equal(blocks.nearest_index, full.nearest_index)
    np.testing.assert_array_equal(blocks.nearest_cosine, full.nearest_cosine)
    assert blocks.flagged.tolist() == list(range(20))


def test_the_search_on_threads_gives_the_one_thread_result() -> None:
    # Prepare: several batches of test images against one reference
    import builder.pipeline.leakage as leakage

    rng = np.random.default_rng(4)
    ref = rng.normal(0, 1, (3000, 160)).astype(np.float32)
    test = rng.normal(0, 1, (700, 160)).astype(np.float32)
    test[::50] = ref[:14]  # near copies spread over the batches
    # Execute
    leakage._RESULT.clear()
    one = find_leakage(test, ref, exact=False, batch_size=64, workers=1)
    leakage._RESULT.clear()
    three = find_leakage(test, ref, exact=False, batch_size=64, workers=3)
    # Assert
    np.testing.assert_array_equal(three.nearest_index, one.nearest_index)
    np.testing.assert_array_equal(three.nearest_cosine, one.nearest_cosine)
    assert three.nearest_index.dtype == np.int64 and three.nearest_cosine.dtype == np.float32
    assert three.flagged.tolist() == list(range(0, 700, 50))
