"""A payload's view on the device: applied before embedding, cached per (corpus, encoder, view)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.features import FeatureCache, embed_images, load_extractor
from agent.pipeline import apply_payload, open_corpus, open_feature_cache
from plada.views import apply_view_all, view_from_ops
from tools.tiny.device import TinyDevice, make_device

VIEW = view_from_ops(
    [
        {"op": "grayscale"},
        {"op": "crop_content", "threshold": 40, "margin": 5, "square": 1},
        {"op": "resize", "size": 12, "filter": "box"},
        {"op": "quantize", "levels": 8},
    ]
)


@pytest.fixture
def device(tmp_path: Path) -> TinyDevice:
    return make_device(tmp_path)


def test_a_view_gets_its_own_cache_folder_and_viewed_features(device: TinyDevice) -> None:
    # Prepare
    corpus = open_corpus(device.config)
    plain = open_feature_cache(device.config, corpus)
    viewed = open_feature_cache(device.config, corpus, view=VIEW)
    indices = np.array([0, 5, 33, 70])
    # Execute
    plain.warm()
    viewed.warm()
    got, computed = viewed.features(indices)
    # Assert
    assert viewed.path != plain.path and viewed.path.name.startswith(plain.path.name)
    assert computed == 0  # served from the view's own warm blocks
    extractor = load_extractor(device.encoder_path)
    expected = embed_images(extractor, apply_view_all(VIEW, corpus.images(indices.tolist())))
    np.testing.assert_allclose(got, expected.astype(np.float16).astype(np.float32), atol=1e-6)
    assert not np.allclose(got, plain.features(indices)[0], atol=1e-2)
    other = view_from_ops([{"op": "invert"}])
    assert open_feature_cache(device.config, corpus, view=other).path != viewed.path
    assert viewed.path in list(plain.root.iterdir())
    assert viewed.path not in plain.remove_stale()  # a view over the same encoder is not stale


def test_apply_never_reuses_unviewed_features(device: TinyDevice) -> None:
    # Prepare: the unviewed cache is warm
    open_feature_cache(device.config, open_corpus(device.config)).warm()
    indices = np.arange(0, 80, 2)
    # Execute
    plain = apply_payload(device.payload(indices=indices), config=device.config)
    viewed = apply_payload(
        device.payload(indices=indices, version=2, view=VIEW), config=device.config
    )
    # Assert
    assert plain.features_computed == 0
    assert viewed.features_computed == indices.size  # embedded under the view, not reused


def test_a_cache_without_view_keeps_its_old_meta(device: TinyDevice) -> None:
    corpus = open_corpus(device.config)
    cache = FeatureCache(device.root / "c2", corpus, load_extractor(device.encoder_path))
    meta = (cache.path / "meta.json").read_text(encoding="utf-8")
    assert "view" not in meta and "-v" not in cache.path.name
