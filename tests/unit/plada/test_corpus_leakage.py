"""Leakage check: exact and near copies of corpus images among target images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plada.corpus import Corpus
from plada.corpus.leakage import (
    DEFAULT_NEAR_THRESHOLD,
    LeakIndex,
    check_leakage,
    corpus_phashes,
    hamming,
    phash,
    phash_batch,
)
from plada.errors import CorpusBuildError
from tools.tiny.corpus import make_tiny_corpus, make_tiny_imagefolder


def _bits(words: np.ndarray) -> str:
    return "".join(f"{int(w):064b}" for w in words)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_phash_matches_imagehash_bits(mode: str) -> None:
    # Prepare
    imagehash = pytest.importorskip("imagehash")
    rng = np.random.default_rng(0)
    shape = (40, 30) if mode == "L" else (40, 30, 3)
    img = Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode)
    # Execute
    mine = _bits(phash(img))
    theirs = imagehash.phash(img, hash_size=16).hash.flatten()
    # Assert
    assert mine == "".join("1" if b else "0" for b in theirs)


def test_phash_near_copies_are_close_and_other_images_far(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=20)
    base = corpus.image(0)
    resized = base.resize((97, 97), Image.Resampling.BICUBIC)
    gray = base.convert("L")
    # Execute
    hashes = phash_batch([base, resized, gray, corpus.image(1), corpus.image(2)])
    dist = hamming(hashes, hashes[0])
    # Assert
    assert dist[0] == 0
    assert dist[1] <= DEFAULT_NEAR_THRESHOLD and dist[2] <= DEFAULT_NEAR_THRESHOLD
    assert dist[3] > DEFAULT_NEAR_THRESHOLD and dist[4] > DEFAULT_NEAR_THRESHOLD


def test_leakage_counts_exact_and_near_copies(tmp_path: Path) -> None:
    # Prepare: a clean target folder, then plant one exact and one re-encoded, resized copy
    corpus = make_tiny_corpus(tmp_path / "c", num_images=60)
    target = make_tiny_imagefolder(tmp_path / "t", train_per_class=3, test_per_class=3, seed=9)
    clean = check_leakage(corpus, target)
    corpus.image(5).save(target / "train" / "circle" / "exact.png")
    corpus.image(50).resize((64, 64)).save(target / "test" / "square" / "near.jpg", quality=80)
    # Execute
    report = check_leakage(corpus, target)
    # Assert
    assert clean.overlap == 0 and clean.num_target_images == 24
    assert (report.overlap, report.exact, report.near) == (2, 1, 1)
    by_target = {leak.target: leak for leak in report.leaks}
    assert by_target["train/circle/exact.png"].corpus_index == 5
    assert by_target["test/square/near.jpg"].corpus_index == 50
    assert report.to_json()["overlap"] == 2 and report.to_json()["near"] == 1


def test_leakage_threshold_zero_only_counts_identical_hashes(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=20)
    index = LeakIndex.from_corpus(corpus, threshold=0)
    shifted = Image.fromarray(np.roll(np.asarray(corpus.image(3)), 3, axis=1))
    # Execute / Assert
    assert index.find("same", corpus.image(3)) is not None
    leak = index.find("shifted", shifted)
    assert leak is None or leak.distance == 0


def test_leakage_corpus_hashes_are_cached_per_fingerprint(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=20)
    cache = tmp_path / "cache"
    # Execute
    first = corpus_phashes(corpus, cache_dir=cache)
    files = list(cache.iterdir())
    np.save(files[0], np.zeros((3, 4), np.uint64))  # wrong shape: must be ignored
    second = corpus_phashes(Corpus.open(corpus.path), cache_dir=cache)
    # Assert
    assert [f.name for f in files] == [f"{corpus.fingerprint}.phash16.npy"]
    assert first.shape == (20, 4) and np.array_equal(first, second)


def test_leakage_rejects_a_target_without_images(tmp_path: Path) -> None:
    # Prepare
    corpus = make_tiny_corpus(tmp_path / "c", num_images=5)
    (tmp_path / "empty").mkdir()
    # Execute / Assert
    with pytest.raises(CorpusBuildError, match="no image files"):
        check_leakage(corpus, tmp_path / "empty")
