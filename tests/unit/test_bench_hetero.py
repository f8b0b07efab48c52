"""bench.hetero's cost controls: each corpus image embedded once per encoder, budget limits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench._common import BenchContext
from bench.hetero import class_budgets


class _Corpus:
    def images(self, indices: Sequence[int]) -> list[int]:
        return list(indices)  # stand-ins: the "image" is its index


def test_reference_rows_embeds_each_image_once_and_keeps_order(tmp_path: Path) -> None:
    # Arrange: a context whose encoder records what it is asked to embed
    ctx = BenchContext(data=tmp_path, work=tmp_path / "work", out=tmp_path / "out")
    ctx._corpus = _Corpus()
    embedded: list[list[int]] = []

    def fake_features(spec: str, images: Sequence[Any]) -> np.ndarray:
        embedded.append(list(images))
        return np.array([[float(i), 2.0 * i] for i in images], dtype=np.float64)

    ctx.cached_image_features = fake_features  # type: ignore[method-assign]
    # Act: two payloads (seeds) that share images, in their own orders
    first = ctx.reference_rows("lite1-128", np.array([5, 3, 9]))
    second = ctx.reference_rows("lite1-128", [9, 7, 3, 3])
    # Assert: only the new image is embedded the second time; rows follow the indices given
    assert embedded == [[3, 5, 9], [7]]
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first[:, 0], [5, 3, 9])
    np.testing.assert_array_equal(second[:, 0], [9, 7, 3, 3])
    np.testing.assert_array_equal(second[:, 1], [18, 14, 6, 6])


def test_reference_rows_keeps_encoders_apart(tmp_path: Path) -> None:
    ctx = BenchContext(data=tmp_path, work=tmp_path / "work", out=tmp_path / "out")
    ctx._corpus = _Corpus()
    calls: list[str] = []

    def fake_features(spec: str, images: Sequence[Any]) -> np.ndarray:
        calls.append(spec)
        return np.ones((len(images), 4), dtype=np.float32)

    ctx.cached_image_features = fake_features  # type: ignore[method-assign]
    ctx.reference_rows("a", [1, 2])
    ctx.reference_rows("b", [1, 2])
    assert calls == ["a", "b"]


@pytest.mark.parametrize(
    ("spec", "budgets", "expected"),
    [
        ("lite1-128", ("2KiB", "8KiB"), ("2KiB", "8KiB")),
        ("opennsfw-224", ("2KiB", "8KiB"), ("2KiB",)),
        ("opennsfw-224", ("8KiB",), ("8KiB",)),  # never none: a quick run still measures it
    ],
)
def test_class_budgets(spec: str, budgets: tuple[str, ...], expected: tuple[str, ...]) -> None:
    assert class_budgets(spec, budgets) == expected
