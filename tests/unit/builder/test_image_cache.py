"""builder.features.image_cache and EncoderFeatures over it: a task's images embedded once across
builds (a small real ONNX encoder, no torch), and the deferred test-split features."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from builder.features.image_cache import cached_image_features, entry_path
from builder.features.sources import EncoderFeatures, TaskFeatures, images_digest
from tools.tiny.corpus import make_tiny_corpus
from tools.tiny.encoder import make_tiny_onnx_encoder


def _never() -> np.ndarray:
    raise AssertionError("embedded although the entry was cached")


def test_an_entry_is_embedded_once_then_read_back(tmp_path: Path) -> None:
    # Prepare
    features = np.arange(12, dtype=np.float32).reshape(3, 4)

    def lookup(embed: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
        return cached_image_features(
            tmp_path,
            encoder_key="onnx-x-abc",
            digest="images:1",
            rows=3,
            feature_dim=4,
            embed=embed,
        )

    # Execute
    _, hit_first = lookup(lambda: features)
    second, hit_second = lookup(_never)
    # Assert
    assert not hit_first and hit_second
    np.testing.assert_array_equal(second, features)
    assert entry_path(tmp_path, "onnx-x-abc", "images:1").exists()


def test_another_encoder_or_other_images_get_their_own_entry(tmp_path: Path) -> None:
    # Prepare
    ones = np.ones((2, 4), np.float32)
    cached_image_features(
        tmp_path, encoder_key="a", digest="images:1", rows=2, feature_dim=4, embed=lambda: ones
    )
    # Execute
    by_encoder, hit_encoder = cached_image_features(
        tmp_path, encoder_key="b", digest="images:1", rows=2, feature_dim=4, embed=lambda: 2 * ones
    )
    by_images, hit_images = cached_image_features(
        tmp_path, encoder_key="a", digest="images:2", rows=2, feature_dim=4, embed=lambda: 3 * ones
    )
    # Assert
    assert not hit_encoder and not hit_images
    assert by_encoder[0, 0] == 2 and by_images[0, 0] == 3


def test_a_malformed_entry_is_embedded_again_and_replaced(tmp_path: Path) -> None:
    # Prepare: an entry of the wrong shape, then one that is not an npy file
    path = entry_path(tmp_path, "a", "images:1")
    path.parent.mkdir(parents=True)
    np.save(path, np.zeros((5, 4), np.float32))
    good = np.ones((2, 4), np.float32)
    # Execute
    fixed, hit = cached_image_features(
        tmp_path, encoder_key="a", digest="images:1", rows=2, feature_dim=4, embed=lambda: good
    )
    path.write_bytes(b"not numpy")
    again, hit_again = cached_image_features(
        tmp_path, encoder_key="a", digest="images:1", rows=2, feature_dim=4, embed=lambda: good
    )
    # Assert
    assert not hit and not hit_again
    np.testing.assert_array_equal(np.load(path), good)
    np.testing.assert_array_equal(fixed, again)


def test_a_second_build_reads_the_task_images_features_from_disk(tmp_path: Path) -> None:
    # Prepare: the same images seen by two sources over one cache root (two builds)
    onnx = make_tiny_onnx_encoder(tmp_path / "enc", size=32, feature_dim=16)
    corpus = make_tiny_corpus(tmp_path / "corpus", num_images=40)
    images: list[Image.Image] = corpus.images(list(range(25)))
    first = EncoderFeatures(str(onnx), cache_root=tmp_path / "cache", progress=False)
    second = EncoderFeatures(str(onnx), cache_root=tmp_path / "cache", progress=False)
    # Execute
    embedded = first.image_features(images)
    read = second.image_features(images)
    other = second.image_features(images[:10])
    # Assert: equal features, the second source ran its encoder only on the new list
    np.testing.assert_array_equal(embedded, read)
    np.testing.assert_allclose(other, embedded[:10], rtol=1e-5, atol=1e-6)
    assert (first.images_embedded, second.images_embedded) == (25, 10)
    assert len(list((tmp_path / "cache" / "images").rglob("*.npy"))) == 2
    assert images_digest(images) != images_digest(images[:10])


def test_deferred_test_features_are_made_once_on_first_use_and_shared_by_copies() -> None:
    # Prepare
    calls: list[int] = []

    def make() -> np.ndarray:
        calls.append(1)
        return np.full((3, 2), 7.0, np.float32)

    feats = TaskFeatures("enc", np.zeros((5, 2), np.float32), np.zeros((4, 2), np.float32), make)
    viewed = feats.with_reference(np.ones((5, 2), np.float32))
    # Execute + Assert: nothing made until asked; then once for both
    assert not feats.test_ready and calls == []
    assert viewed.test.shape == (3, 2)
    assert feats.test_ready and feats.test is viewed.test
    assert calls == [1]
    assert viewed.reference[0, 0] == 1 and feats.reference[0, 0] == 0
