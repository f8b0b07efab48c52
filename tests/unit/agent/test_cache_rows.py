"""The feature cache's row segments: features computed on demand are kept by index, checked on
every read, and a damaged segment is dropped and recomputed, never trusted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.cache_rows import SEGMENT_GLOB
from agent.features import FeatureCache, FeatureExtractor, load_extractor
from plada.corpus import Corpus
from tools.tiny.corpus import make_tiny_corpus
from tools.tiny.encoder import make_tiny_onnx_encoder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus") / "c", num_images=60, seed=2)


@pytest.fixture(scope="module")
def encoder_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx_encoder(tmp_path_factory.mktemp("enc") / "e", size=32, feature_dim=16)


class _Counting:
    def __init__(self, inner: FeatureExtractor) -> None:
        self.inner = inner
        self.info = inner.info
        self.images = 0

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.images += batch.shape[0]
        return self.inner.embed(batch)


def _cache(
    corpus: Corpus, encoder_path: Path, root: Path, *, max_row_segments: int = 8
) -> FeatureCache:
    extractor = _Counting(load_extractor(encoder_path))
    return FeatureCache(
        root, corpus, extractor, block_size=16, batch_size=8, max_row_segments=max_row_segments
    )


def _segments(cache: FeatureCache) -> list[Path]:
    return sorted(cache.path.glob(SEGMENT_GLOB))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


PAYLOAD = np.array([41, 3, 17, 3, 58, 30])


def test_rows_computed_on_demand_serve_the_next_apply(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare
    cache = _cache(corpus, encoder_path, tmp_path / "cache")
    # Execute
    cold, cold_computed = cache.features(PAYLOAD)
    warm, warm_computed = _cache(corpus, encoder_path, tmp_path / "cache").features(PAYLOAD)
    wider = _cache(corpus, encoder_path, tmp_path / "cache")
    overlap, overlap_computed = wider.features(np.array([17, 5, 58, 6]))
    # Assert
    assert cold_computed == 6 and warm_computed == 0 and np.array_equal(cold, warm)
    assert overlap_computed == 2 and wider.extractor.images == 2  # type: ignore[attr-defined]
    assert np.array_equal(overlap[[0, 2]], cold[[2, 4]])
    assert len(_segments(cache)) == 2 and not list(cache.path.glob("block-*"))
    # the same features whether they came from rows, blocks or a fresh embedding
    blocks = _cache(corpus, encoder_path, tmp_path / "blocks")
    blocks.warm()
    assert np.array_equal(blocks.features(PAYLOAD)[0], cold)


@pytest.mark.parametrize(
    ("where", "damage"),
    [
        ("a feature byte", lambda p: _flip(p, p.stat().st_size - 3)),
        ("an index", lambda p: _flip(p, 14 + 16 + 1)),
        ("the header", lambda p: _flip(p, 14 + 9)),
        ("the length", lambda p: p.write_bytes(p.read_bytes()[:-5])),
        ("the magic", lambda p: _flip(p, 2)),
    ],
)
def test_a_damaged_segment_is_dropped_and_recomputed(
    corpus: Corpus, encoder_path: Path, tmp_path: Path, where: str, damage: object
) -> None:
    # Prepare
    cache = _cache(corpus, encoder_path, tmp_path / "cache")
    expected, _ = cache.features(PAYLOAD)
    (segment,) = _segments(cache)
    damage(segment)  # type: ignore[operator]
    # Execute
    again = _cache(corpus, encoder_path, tmp_path / "cache")
    features, computed = again.features(PAYLOAD)
    # Assert
    assert computed == 6, where
    assert again.extractor.images == 6  # type: ignore[attr-defined]
    assert np.array_equal(features, expected)
    (_rewritten,) = _segments(again)  # the damaged file was deleted, the rows stored again
    assert _cache(corpus, encoder_path, tmp_path / "cache").features(PAYLOAD)[1] == 0


def test_non_finite_rows_are_never_served(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare: a row whose bytes and checksum both say NaN (a damaged encoder, not a disk)
    from agent.cache_rows import RowFiles

    cache = _cache(corpus, encoder_path, tmp_path / "cache")
    rows = RowFiles(cache.path, dim=16, dtype=np.dtype("float16"))
    bad = np.zeros((1, 16), dtype=np.float16)
    with pytest.raises(ValueError, match="non-finite"):
        rows.write(np.array([7]), bad + np.float16("nan"))
    # Execute / Assert
    assert rows.write(np.array([], dtype=np.int64), bad[:0]) is None
    assert _segments(cache) == []


def test_at_most_max_segments_are_kept(corpus: Corpus, encoder_path: Path, tmp_path: Path) -> None:
    # Prepare
    cache = _cache(corpus, encoder_path, tmp_path / "cache", max_row_segments=2)
    # Execute
    for payload in ([1, 2], [20, 21], [40, 41]):
        cache.features(np.array(payload))
    newest, newest_computed = cache.features(np.array([40, 41, 20]))
    _, oldest_computed = cache.features(np.array([1, 2]))
    # Assert
    assert newest_computed == 0 and oldest_computed == 2
    assert len(_segments(cache)) == 2
    assert newest.shape == (3, 16)
