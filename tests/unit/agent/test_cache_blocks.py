"""agent.cache_blocks' fast paths: the .npy view and the float16 finite check agree with NumPy."""

from __future__ import annotations

import io

import numpy as np
import pytest

from agent.cache_blocks import _all_finite, _array_view


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("fortran", [False, True])
def test_the_view_reads_what_np_load_reads(dtype: type, fortran: bool) -> None:
    # Prepare
    array = np.arange(24, dtype=dtype).reshape(4, 6) / 7
    array = np.asfortranarray(array) if fortran else array
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    # Execute
    view = _array_view(memoryview(buffer.getvalue()))
    # Assert
    np.testing.assert_array_equal(view, np.load(io.BytesIO(buffer.getvalue())))
    assert view.dtype == array.dtype and view.shape == array.shape


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_the_finite_check_catches_every_non_finite_value(bad: float, dtype: type) -> None:
    # Prepare: the largest finite values pass
    good: np.ndarray = np.array(
        [0.0, -0.0, np.finfo(dtype).max, np.finfo(dtype).min, 1e-7], dtype=dtype
    )
    bad_array = good.copy()
    bad_array[2] = bad
    # Execute / Assert
    assert _all_finite(good)
    assert not _all_finite(bad_array)
