"""Passes over memory-mapped corpus features hold one chunk, not the whole file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from builder.features.stream import column_mean, release, row_chunks, take_rows
from builder.pipeline.scores import prototype_cosine
from builder.pipeline.teacher import Teacher


def _rss_file_mb() -> float:
    """This process's resident file-backed pages (mapped files), MB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1]) / 1024
    pytest.skip("no RssFile in /proc/self/status")


@pytest.fixture
def mapped(tmp_path: Path) -> np.ndarray:
    rng = np.random.default_rng(0)
    path = tmp_path / "features.npy"
    np.save(path, rng.normal(size=(24_000, 640)).astype(np.float32))  # 61 MB
    mapped: np.ndarray = np.load(path, mmap_mode="r")
    return mapped


def test_row_chunks_give_every_row_and_release_the_pages(mapped: np.ndarray) -> None:
    # Prepare
    before = _rss_file_mb()
    # Execute
    total = np.zeros(mapped.shape[1], np.float64)
    starts = []
    for start, chunk in row_chunks(mapped, 1000):
        starts.append(start)
        total += chunk.sum(axis=0, dtype=np.float64)
    streamed = _rss_file_mb() - before
    plain = np.asarray(mapped).sum(axis=0, dtype=np.float64)  # touches every page, keeps them
    held = _rss_file_mb() - before
    # Assert
    assert starts == list(range(0, 24_000, 1000))
    np.testing.assert_allclose(total, plain, rtol=1e-9)
    np.testing.assert_allclose(column_mean(mapped, 777), plain / 24_000, rtol=1e-9)
    assert streamed < 12 and held > 48, (streamed, held)


def test_release_ignores_arrays_that_are_not_mapped() -> None:
    array = np.ones((10, 4), np.float32)
    release(array[2:5])
    assert array.sum() == 40


def test_scoring_a_mapped_corpus_gives_what_an_in_memory_one_gives(mapped: np.ndarray) -> None:
    # Prepare
    rng = np.random.default_rng(1)
    teacher = Teacher(
        weight=rng.normal(size=(640, 3)),
        bias=rng.normal(size=3),
        mean=rng.normal(size=640),
        scale=np.abs(rng.normal(size=640)) + 0.5,
        l2=0.01,
    )
    protos = rng.normal(size=(3, 640)).astype(np.float32)
    in_memory = np.array(mapped)
    center = in_memory.mean(axis=0, dtype=np.float64)
    # Execute / Assert
    np.testing.assert_allclose(
        teacher.logits(mapped, batch_size=5000), teacher.logits(in_memory), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        prototype_cosine(mapped, protos, center=center, batch_size=3000),
        prototype_cosine(in_memory, protos, center=center),
        rtol=1e-5,
        atol=1e-6,
    )


def test_take_rows_gathers_in_the_given_order_and_releases_the_pages(mapped: np.ndarray) -> None:
    # Prepare: scattered, unsorted, one index twice
    indices = np.random.default_rng(3).choice(24_000, size=3000, replace=False)
    indices[5] = indices[9]
    before = _rss_file_mb()
    # Execute
    got = take_rows(mapped, indices, rows=2000)
    after = _rss_file_mb() - before
    # Assert
    np.testing.assert_array_equal(got, np.asarray(mapped)[indices])
    np.testing.assert_array_equal(take_rows(np.asarray(mapped), indices[:7]), mapped[indices[:7]])
    assert got.dtype == np.float32 and after < 12, after
