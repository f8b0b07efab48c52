"""Kill an embedding run with SIGKILL midway, resume it, and get the same features.

The child process runs the real PyTorch Lite0 (32 px) through `embed_corpus`, slowed down by a
sleep per batch so that the kill lands after a few blocks and well before the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from builder.features.embed import cache_dir, done_blocks, embed_corpus, embed_images
from tools.tiny.corpus import make_tiny_corpus

pytestmark = pytest.mark.torch
pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[3]

_CHILD = """
import sys, time
from pathlib import Path
from builder.features.embed import embed_corpus
from builder.encoders.torch_encoder import TorchEncoder
from plada.corpus import Corpus
from plada.encoders import parse_encoder_spec

class Slow:
    def __init__(self, inner):
        self.inner = inner
        for name in ("id", "size", "feature_dim", "preprocess", "cache_key"):
            setattr(self, name, getattr(inner, name))
    def embed(self, batch):
        time.sleep(0.15)
        return self.inner.embed(batch)

corpus = Corpus.open(Path(sys.argv[1]))
encoder = Slow(TorchEncoder(parse_encoder_spec("lite0-32")))
print("ready", flush=True)
embed_corpus(corpus, encoder, cache_root=Path(sys.argv[2]), batch_size=8, block_size=8,
             progress=False)
print("finished", flush=True)
"""


class Counting:
    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.images = 0
        for name in ("id", "size", "feature_dim", "preprocess", "cache_key"):
            setattr(self, name, getattr(inner, name))

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.images += len(batch)
        out: np.ndarray = self.inner.embed(batch)  # type: ignore[attr-defined]
        return out


def test_embed_corpus_resumes_after_sigkill_to_the_same_features(tmp_path: Path) -> None:
    # Prepare
    from builder.encoders.torch_encoder import TorchEncoder
    from plada.encoders import parse_encoder_spec

    corpus = make_tiny_corpus(tmp_path / "corpus", num_images=96)
    cache = tmp_path / "cache"
    encoder = Counting(TorchEncoder(parse_encoder_spec("lite0-32")))
    blocks_dir = cache_dir(cache, corpus, encoder) / "blocks"  # type: ignore[arg-type]
    # Execute: SIGKILL once 3 of the 12 blocks are on disk, then resume in this process
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(corpus.path), str(cache)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ) as child:
        try:
            deadline = time.monotonic() + 120
            while len(done_blocks(blocks_dir.parent)) < 3:
                assert child.poll() is None, "the embedding run ended before it could be killed"
                assert time.monotonic() < deadline, "no block written within 120 s"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
            output, _ = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                child.kill()
    assert "finished" not in output
    done_before = done_blocks(blocks_dir.parent)
    features = embed_corpus(
        corpus,
        encoder,  # type: ignore[arg-type]
        cache_root=cache,
        batch_size=8,
        block_size=8,
        progress=False,
    )
    # Assert: only the missing blocks were computed, and the result equals an uninterrupted run
    assert child.returncode == -signal.SIGKILL
    assert 3 <= len(done_before) < 12
    assert encoder.images == 96 - 8 * len(done_before)
    expected = embed_images(corpus.images(range(96)), encoder.inner, batch_size=8)  # type: ignore[arg-type]
    assert features.shape == (96, 1280)
    np.testing.assert_allclose(features, expected, rtol=0, atol=1e-5)
