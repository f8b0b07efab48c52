"""PyTorch EfficientNet-Lite encoders: real ImageNet weights load offline, shapes, layouts,
input checks, and `load_encoder` dispatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builder.encoders.load import Encoder, load_encoder
from builder.errors import EncoderError
from plada.encoders import EncoderSpec
from plada.preprocess import preprocess_batch

pytestmark = pytest.mark.torch
pytest.importorskip("torch")
skimage_data = pytest.importorskip("skimage.data")

# ImageNet-1k class ids: 281-285 are domestic cats; 967 espresso, 968 cup, 504 coffee mug.
CATS = {281, 282, 283, 284, 285}
COFFEE = {967, 968, 504}


@pytest.mark.parametrize("model", ["lite0", "lite1", "lite2"])
def test_torch_encoder_loads_real_imagenet_weights(model: str) -> None:
    # Prepare
    from builder.encoders.torch_encoder import TorchEncoder

    encoder = TorchEncoder(EncoderSpec(model, 224))
    photos = [Image.fromarray(skimage_data.chelsea()), Image.fromarray(skimage_data.coffee())]
    batch = preprocess_batch(photos, size=224)
    # Execute
    logits = encoder.classify(batch)
    top5 = [set(np.argsort(-row)[:5].tolist()) for row in logits]
    # Assert: the cat photo is a cat, the coffee photo is espresso/cup/mug, in the top 5
    assert logits.shape == (2, 1000)
    assert int(np.argmax(logits[0])) in CATS
    assert top5[1] & COFFEE
    assert encoder.feature_dim == 1280


def test_torch_encoder_splits_big_batches_below_the_mmap_threshold() -> None:
    # Prepare: 224 px, where one 96 x 112 x 112 activation is 4.8 MB per image
    from builder.encoders.parity import real_images
    from builder.encoders.torch_encoder import TorchEncoder

    encoder = TorchEncoder(EncoderSpec("lite0", 224))
    batch = preprocess_batch(real_images(7, seed=3), size=224)  # (7, 3, 224, 224)
    # Execute
    together = encoder.embed(batch)
    one_by_one = np.concatenate([encoder.embed(batch[i : i + 1]) for i in range(len(batch))])
    # Assert: 3 rows per forward at 224 px, and the same features as single rows
    assert encoder.rows_per_forward == 3
    assert together.shape == (7, 1280)
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)


def test_torch_encoder_embed_shapes_and_layouts_agree() -> None:
    # Prepare
    from builder.encoders.torch_encoder import TorchEncoder

    spec = EncoderSpec("lite0", 64)
    fast, plain = TorchEncoder(spec), TorchEncoder(spec, channels_last=False)
    batch = preprocess_batch(
        [Image.fromarray(skimage_data.astronaut()), Image.fromarray(skimage_data.camera())],
        size=64,
    )
    # Execute
    a, b = fast.embed(batch), plain.embed(batch)
    # Assert
    assert a.shape == (2, 1280)
    assert a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4)
    assert (a >= 0).all() and (a <= 6).all()  # mean of ReLU6 activations
    assert not np.allclose(a[0], a[1])


def test_torch_encoder_rejects_a_batch_of_the_wrong_size() -> None:
    # Prepare
    from builder.encoders.torch_encoder import TorchEncoder

    encoder = TorchEncoder(EncoderSpec("lite0", 64))
    # Execute / Assert
    with pytest.raises(EncoderError, match=r"lite0-64: expected a \(B, 3, 64, 64\) float32"):
        encoder.embed(np.zeros((1, 3, 32, 32), np.float32))


def test_load_encoder_returns_torch_for_a_float_spec() -> None:
    # Execute
    encoder = load_encoder("lite1-96")
    # Assert
    assert isinstance(encoder, Encoder)
    assert (encoder.id, encoder.size, encoder.feature_dim) == ("lite1-96", 96, 1280)
    assert encoder.cache_key.startswith("torch-lite1-96-")
    assert encoder.preprocess == "tf-127-128"


@pytest.mark.parametrize(
    ("spec", "backend", "match"),
    [
        ("lite7-64", "auto", "unknown encoder model"),
        ("lite0-64-int8", "torch", "int8 encoders run on ONNX Runtime"),
        ("lite0-64", "tflite", "unknown encoder backend"),
    ],
)
def test_load_encoder_names_the_problem(spec: str, backend: str, match: str) -> None:
    with pytest.raises(EncoderError, match=match):
        load_encoder(spec, backend=backend)


def test_load_encoder_names_a_missing_onnx_file(tmp_path: Path) -> None:
    with pytest.raises(EncoderError, match=r"nope\.onnx: no such ONNX encoder file"):
        load_encoder(tmp_path / "nope.onnx")
