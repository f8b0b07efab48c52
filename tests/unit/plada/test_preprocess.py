"""plada.preprocess: the batch path gives exactly the per-image definition's values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from plada.preprocess import preprocess_batch, preprocess_image


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    gray = Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L")
    rgb = Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8), mode="RGB")
    rgba = Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8), mode="RGBA")
    palette = rgb.convert("P")
    exact = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), mode="RGB")
    big_gray = Image.fromarray(rng.integers(0, 256, (300, 200), dtype=np.uint8), mode="L")
    return [gray, rgb, rgba, palette, exact, big_gray]


@pytest.mark.parametrize("size", [32, 64, 96])
def test_preprocess_batch_equals_per_image_definition(size: int) -> None:
    # Prepare
    images = _images()
    expected = np.stack([preprocess_image(im, size=size) for im in images])
    # Execute
    batch = preprocess_batch(images, size=size)
    # Assert: bit for bit, gray images resized as L included
    assert batch.dtype == np.float32
    assert batch.shape == (len(images), 3, size, size)
    assert np.array_equal(batch, expected)


def test_preprocess_batch_fills_a_given_buffer() -> None:
    # Prepare
    images = _images()
    buffer = np.full((len(images), 3, 32, 32), np.nan, dtype=np.float32)
    # Execute
    out = preprocess_batch(images, size=32, out=buffer)
    # Assert
    assert out is buffer
    assert np.array_equal(buffer, preprocess_batch(images, size=32))


def test_preprocess_batch_refuses_a_wrong_buffer() -> None:
    with pytest.raises(ValueError, match="expected"):
        preprocess_batch(_images(), size=32, out=np.empty((1, 3, 32, 32), dtype=np.float32))
