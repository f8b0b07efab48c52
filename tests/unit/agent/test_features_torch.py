"""The agent's onnxruntime backend reproduces the builder's PyTorch encoder features.

Runs the real export path (`builder.encoders.export.export_encoder`, EfficientNet-Lite0 at 32 px,
fp32) and compares agent features with the builder's torch features on real corpus images. Builder
code is imported only here, inside the test: the agent package itself never imports builder or
torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.features import embed_images, load_extractor
from plada.preprocess import preprocess_batch
from tools.tiny.corpus import make_tiny_corpus


@pytest.mark.torch
def test_ort_backend_matches_builder_torch_features(tmp_path: Path) -> None:
    # Prepare
    pytest.importorskip("torch")
    from builder.encoders.export import export_encoder
    from builder.encoders.torch_encoder import TorchEncoder
    from plada.encoders import EncoderSpec

    corpus = make_tiny_corpus(tmp_path / "corpus", num_images=24, seed=8)
    images = corpus.images(list(range(24)))  # RGB and gray images, decoded from the corpus
    spec = EncoderSpec("lite0", 32)
    exported = export_encoder(spec, tmp_path / "enc", parity_images=images[:8])
    # Execute
    agent_features = embed_images(load_extractor(exported.path, threads=1), images, batch_size=5)
    torch_features = TorchEncoder(spec, channels_last=False).embed(
        preprocess_batch(images, size=32)
    )
    # Assert
    assert agent_features.shape == (24, exported.info.feature_dim)
    assert np.abs(torch_features).max() > 0.1
    assert np.abs(agent_features - torch_features).max() < 1e-4
