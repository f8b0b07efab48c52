"""Candidate views come from measured properties of the target against the corpus."""

from __future__ import annotations

import numpy as np
from PIL import Image

from builder.pipeline.views import corpus_sample, measure, propose_views
from plada.views import apply_view


def _corpus(count: int = 40) -> list[Image.Image]:
    """28x28 RGB images, dark background, a bright blob in the middle third."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 10, size=(28, 28, 3)).astype(np.uint8)
        pixels[9:19, 8:20] = rng.integers(150, 255, size=3)
        out.append(Image.fromarray(pixels, mode="RGB"))
    return out


def _scans(count: int = 30) -> list[Image.Image]:
    """8x8 grey images with 5 levels whose content fills the frame."""
    rng = np.random.default_rng(1)
    return [
        Image.fromarray((rng.integers(0, 5, size=(8, 8)) * 63).astype(np.uint8), mode="L")
        for _ in range(count)
    ]


def test_measure_reads_side_grey_levels_and_polarity() -> None:
    look = measure(_scans())
    assert (look.side, look.grey, look.levels, look.count) == (8, True, 5, 30)
    corpus = measure(_corpus())
    assert (corpus.side, corpus.grey, corpus.background) == (28, False, "dark")
    assert corpus.fill < 0.5 < look.fill


def test_a_target_unlike_the_corpus_gets_views_made_of_its_measurements() -> None:
    views, want, _ = propose_views(_scans(), _corpus(), max_views=2)
    assert [op.name for op in views[0].ops] == [
        "grayscale", "polarity", "crop_content", "resize", "quantize",
    ]  # fmt: skip
    assert views[0].ops[3].param("size") == want.side == 8
    assert views[0].ops[4].param("levels") == want.levels == 5
    assert [op.name for op in views[1].ops] == ["crop_content", "resize"]
    viewed = apply_view(views[0], _corpus()[0])
    assert viewed.size == (8, 8) and viewed.mode == "L"
    assert len(np.unique(np.asarray(viewed))) <= 5


def test_a_target_that_looks_like_the_corpus_gets_no_view() -> None:
    views, _, _ = propose_views(_corpus(), _corpus())
    assert views == []
    assert len(propose_views(_scans(), _corpus(), max_views=1)[0]) == 1


def test_corpus_sample_spans_the_corpus() -> None:
    sample = corpus_sample(83_480)
    assert len(sample) == 512 and sample[0] == 0 and sample[-1] == 83_479
    assert corpus_sample(10) == list(range(10))
