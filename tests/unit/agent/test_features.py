"""Encoder backends and the corpus feature cache."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from agent.errors import EncoderBackendError, FeatureCacheError
from agent.features import (
    EncoderInfo,
    FeatureCache,
    FeatureExtractor,
    embed_images,
    load_extractor,
)
from plada.corpus import Corpus
from tools.tiny.corpus import make_tiny_corpus
from tools.tiny.encoder import make_tiny_onnx_encoder, make_tiny_tflite_encoder

_HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus") / "c", num_images=50, seed=4)


@pytest.fixture
def encoder_path(tmp_path: Path) -> Path:
    return make_tiny_onnx_encoder(tmp_path / "enc", size=32, feature_dim=16)


class _CountingExtractor:
    """Wraps an extractor; counts images embedded; can fail after a number of calls."""

    def __init__(self, inner: FeatureExtractor, *, fail_after_calls: int | None = None) -> None:
        self.inner = inner
        self.info = inner.info
        self.images = 0
        self.calls = 0
        self.fail_after_calls = fail_after_calls

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.images += batch.shape[0]
        return self.inner.embed(batch)


def test_encoder_info_reads_sidecar_and_checks_hash(encoder_path: Path) -> None:
    # Execute
    info = EncoderInfo.load(encoder_path)
    # Assert
    assert (info.id, info.size, info.feature_dim) == ("tiny0-32", 32, 16)
    # Prepare: replace the file behind the sidecar's back
    encoder_path.write_bytes(encoder_path.read_bytes() + b"\0")
    # Execute / Assert
    with pytest.raises(EncoderBackendError, match="does not match sha256"):
        EncoderInfo.load(encoder_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"feature_dim": "16"}, "key 'feature_dim' must be int"),
        ({"preprocess": "imagenet"}, "preprocess 'imagenet'"),
        ({"size": True}, "key 'size' must be int"),
    ],
)
def test_encoder_info_names_bad_sidecar_keys(
    encoder_path: Path, change: dict[str, object], message: str
) -> None:
    # Prepare
    sidecar = encoder_path.with_suffix(".json")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    sidecar.write_text(json.dumps({**meta, **change}), encoding="utf-8")
    # Execute / Assert
    with pytest.raises(EncoderBackendError, match=message):
        EncoderInfo.load(encoder_path)


def test_encoder_info_refuses_a_tflite_its_sidecar_does_not_record(encoder_path: Path) -> None:
    # Prepare: a .tflite beside an ONNX export whose sidecar has no tflite_sha256 (never checked)
    tflite = encoder_path.with_suffix(".tflite")
    tflite.write_bytes(b"TFL3 not checked by any export")
    # Execute / Assert
    with pytest.raises(EncoderBackendError, match=r"records no tflite_sha256 for tiny0-32\.tflite"):
        EncoderInfo.load(tflite)
    # Prepare: the export's record, then a replaced file
    sidecar = encoder_path.with_suffix(".json")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    meta["tflite_sha256"] = hashlib.sha256(tflite.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta), encoding="utf-8")
    assert EncoderInfo.load(tflite).sha256 == meta["tflite_sha256"]
    tflite.write_bytes(b"TFL3 replaced")
    with pytest.raises(EncoderBackendError, match="does not match tflite_sha256"):
        EncoderInfo.load(tflite)


def test_encoder_info_reports_missing_sidecar(encoder_path: Path) -> None:
    # Prepare
    encoder_path.with_suffix(".json").unlink()
    # Execute / Assert
    with pytest.raises(EncoderBackendError, match=r"sidecar .* is missing"):
        load_extractor(encoder_path)


def test_ort_extractor_checks_output_shape(encoder_path: Path) -> None:
    # Prepare: the sidecar lies about the feature size
    sidecar = encoder_path.with_suffix(".json")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    sidecar.write_text(json.dumps({**meta, "feature_dim": 8}), encoding="utf-8")
    extractor = load_extractor(encoder_path)
    # Execute / Assert
    with pytest.raises(EncoderBackendError, match=r"returned shape \(2, 16\), expected \(2, 8\)"):
        extractor.embed(np.zeros((2, 3, 32, 32), np.float32))


@pytest.mark.skipif(not _HAS_LITERT, reason="ai-edge-litert not installed (plada[tflite])")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tflite_and_onnxruntime_backends_agree_on_real_images(
    corpus: Corpus, tmp_path: Path
) -> None:
    # Prepare: the same encoder in both formats, real corpus images (RGB and gray)
    onnx_path = make_tiny_onnx_encoder(tmp_path, size=32, feature_dim=16, seed=2)
    tflite_path = make_tiny_tflite_encoder(tmp_path, size=32, feature_dim=16, seed=2)
    images = corpus.images(list(range(0, 50, 3)))
    # Execute
    ort_features = embed_images(load_extractor(onnx_path), images, batch_size=7)
    tfl_features = embed_images(
        load_extractor(tflite_path, backend="tflite", threads=1), images, batch_size=7
    )
    # Assert
    assert ort_features.shape == (17, 16)
    assert np.abs(ort_features).max() > 0.1
    assert np.abs(ort_features - tfl_features).max() < 1e-4


def test_load_extractor_rejects_unknown_backend(encoder_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(EncoderBackendError, match="unknown encoder backend 'tensorrt'"):
        load_extractor(encoder_path, backend="tensorrt")


def test_feature_cache_warm_then_serves_features_from_blocks(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare
    extractor = _CountingExtractor(load_extractor(encoder_path))
    cache = FeatureCache(tmp_path / "cache", corpus, extractor, block_size=16, batch_size=8)
    direct = embed_images(extractor.inner, corpus.images(list(range(50))))
    # Execute
    report = cache.warm()
    embedded_by_warm = extractor.images
    features, computed = cache.features(np.array([0, 17, 33, 49]))
    # Assert
    assert (report.blocks_total, report.blocks_computed, embedded_by_warm) == (4, 4, 50)
    assert cache.is_complete()
    assert computed == 0 and extractor.images == embedded_by_warm  # nothing recomputed
    assert features.dtype == np.float32
    assert np.abs(features - direct[[0, 17, 33, 49]]).max() < 1e-2  # float16 storage
    assert np.load(cache.path / "block-000003.npy").shape == (2, 16)


def test_feature_cache_resumes_after_a_crash(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare: the encoder dies during the third batch (block 1 of 16 images = batches 2, 3)
    inner = load_extractor(encoder_path)
    crashing = _CountingExtractor(inner, fail_after_calls=3)
    cache = FeatureCache(tmp_path / "cache", corpus, crashing, block_size=16, batch_size=8)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cache.warm()
    # Execute
    counting = _CountingExtractor(inner)
    resumed = FeatureCache(tmp_path / "cache", corpus, counting, block_size=16, batch_size=8)
    report = resumed.warm()
    # Assert: block 0 survived, no temp files left behind, only blocks 1..3 recomputed
    assert report.blocks_computed == 3
    assert counting.images == 50 - 16
    assert sorted(p.name for p in resumed.path.iterdir()) == [
        "block-000000.npy",
        "block-000001.npy",
        "block-000002.npy",
        "block-000003.npy",
        "meta.json",
    ]


def test_feature_cache_computes_missing_indices_on_demand(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare: only block 0 cached
    counting = _CountingExtractor(load_extractor(encoder_path))
    cache = FeatureCache(tmp_path / "cache", corpus, counting, block_size=16, batch_size=8)
    cache.warm(should_stop=lambda: counting.images >= 16)
    before = counting.images
    # Execute
    features, computed = cache.features(np.array([3, 20, 40]))
    # Assert
    assert before == 16
    assert computed == 2 and counting.images == before + 2
    cold = FeatureCache(tmp_path / "other", corpus, counting, block_size=16)
    assert np.array_equal(cold.features(np.array([3, 20, 40]))[0], features)  # same either way


def test_feature_cache_rebuilds_when_encoder_changes(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare
    old = FeatureCache(tmp_path / "cache", corpus, load_extractor(encoder_path), block_size=32)
    old.warm()
    other = make_tiny_onnx_encoder(tmp_path / "enc2", size=32, feature_dim=16, seed=9)
    # Execute
    new = FeatureCache(tmp_path / "cache", corpus, load_extractor(other), block_size=32)
    removed = new.remove_stale()
    # Assert
    assert new.path != old.path
    assert removed == [old.path] and not old.path.exists()
    assert new.missing_blocks() == [0, 1]


def test_feature_cache_rebuilds_when_settings_change(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare
    extractor = load_extractor(encoder_path)
    FeatureCache(tmp_path / "cache", corpus, extractor, block_size=32).warm()
    # Execute: same key, different block size -> the folder is wiped and started again
    cache = FeatureCache(tmp_path / "cache", corpus, extractor, block_size=16)
    # Assert
    assert cache.missing_blocks() == [0, 1, 2, 3]


def test_feature_cache_drops_damaged_block(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare
    counting = _CountingExtractor(load_extractor(encoder_path))
    cache = FeatureCache(tmp_path / "cache", corpus, counting, block_size=32)
    cache.warm()
    (cache.path / "block-000001.npy").write_bytes(b"garbage")
    before = counting.images
    # Execute
    _, computed = cache.features(np.array([40, 41]))
    # Assert
    assert computed == 2 and counting.images == before + 2
    assert cache.missing_blocks() == [1]


def test_feature_cache_rejects_out_of_range_index(
    corpus: Corpus, encoder_path: Path, tmp_path: Path
) -> None:
    # Prepare
    cache = FeatureCache(tmp_path / "cache", corpus, load_extractor(encoder_path))
    # Execute / Assert
    with pytest.raises(FeatureCacheError, match="index 50 is outside the corpus"):
        cache.features(np.array([1, 50]))


def test_ort_extractor_reports_unloadable_file_on_first_use(encoder_path: Path) -> None:
    # Prepare: a file that is not ONNX, with a sidecar whose hash matches it
    encoder_path.write_bytes(b"not an onnx model")
    sidecar = encoder_path.with_suffix(".json")
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    meta["sha256"] = hashlib.sha256(b"not an onnx model").hexdigest()
    sidecar.write_text(json.dumps(meta), encoding="utf-8")
    extractor = load_extractor(encoder_path)  # cheap: the session opens lazily
    # Execute / Assert
    with pytest.raises(EncoderBackendError, match="onnxruntime cannot load"):
        extractor.embed(np.zeros((1, 3, 32, 32), np.float32))
