"""Embedding lanes (builder/features/lanes.py): a corpus embedded by several one-thread ONNX
sessions side by side gives the features one session gives, and a failing lane stops the others
with the blocks finished so far kept for the resume."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from builder.encoders.onnx_encoder import OnnxEncoder
from builder.features import embed as embed_module
from builder.features.embed import cache_dir, done_blocks, embed_corpus
from builder.features.lanes import lane_encoders, split_contiguous
from plada.corpus import Corpus
from tools.tiny.corpus import make_tiny_corpus
from tools.tiny.encoder import make_tiny_onnx_encoder


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    return make_tiny_corpus(tmp_path / "corpus", num_images=100)


@pytest.fixture
def onnx_path(tmp_path: Path) -> Path:
    return make_tiny_onnx_encoder(tmp_path / "encoders", size=32, feature_dim=24, seed=1)


def test_lanes_split_only_an_onnx_session_nobody_gave_a_thread_count(onnx_path: Path) -> None:
    default = OnnxEncoder(onnx_path)
    lanes = lane_encoders(default, blocks=10, cores=2)
    assert len(lanes) == 2 and all(isinstance(e, OnnxEncoder) and e.threads == 1 for e in lanes)
    wide = lane_encoders(default, blocks=10, cores=16)  # at most four lanes, the cores shared
    assert [e.threads for e in wide] == [4, 4, 4, 4]  # type: ignore[attr-defined]
    assert lane_encoders(default, blocks=1, cores=2) == [default]  # one block: one lane
    assert lane_encoders(default, blocks=10, cores=1) == [default]
    chosen = OnnxEncoder(onnx_path, threads=2)  # --threads: the user's one session
    assert lane_encoders(chosen, blocks=10, cores=2) == [chosen]


def test_contiguous_split_covers_every_block_once_in_order() -> None:
    assert split_contiguous([3, 4, 5, 6, 7], 2) == [[3, 4], [5, 6, 7]]
    assert split_contiguous([], 1) == [[]]
    assert [i for part in split_contiguous(list(range(13)), 4) for i in part] == list(range(13))


def test_lanes_give_the_features_of_one_session(
    corpus: Corpus, onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: the same corpus through one session, then through two lanes
    monkeypatch.setattr("builder.features.lanes.available_cores", lambda: 1)
    one = np.array(
        embed_corpus(corpus, OnnxEncoder(onnx_path), cache_root=tmp_path / "one", block_size=16)
    )
    monkeypatch.setattr("builder.features.lanes.available_cores", lambda: 2)
    made: list[int] = []
    real = lane_encoders

    def counted(encoder: OnnxEncoder, blocks: int) -> list[OnnxEncoder]:
        lanes = real(encoder, blocks)
        made.append(len(lanes))
        return lanes  # type: ignore[return-value]

    monkeypatch.setattr(embed_module, "lane_encoders", counted)
    # Execute
    two = np.array(
        embed_corpus(
            corpus,
            OnnxEncoder(onnx_path),
            cache_root=tmp_path / "two",
            block_size=16,
            batch_size=8,
        )
    )
    # Assert
    assert made == [2]
    assert one.shape == two.shape == (100, 24)
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-6)


def test_a_failing_lane_stops_the_others_and_keeps_finished_blocks(
    corpus: Corpus, onnx_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a slow first lane, and a second lane whose encoder fails on its second batch
    class Slow(OnnxEncoder):
        def embed(self, batch: np.ndarray) -> np.ndarray:
            time.sleep(0.2)
            return super().embed(batch)

    class Failing(OnnxEncoder):
        calls = 0

        def embed(self, batch: np.ndarray) -> np.ndarray:
            Failing.calls += 1
            if Failing.calls == 2:
                raise OSError("the encoder file went away")
            return super().embed(batch)

    def lanes(encoder: OnnxEncoder, blocks: int) -> list[OnnxEncoder]:
        return [Slow(onnx_path, threads=1), Failing(onnx_path, threads=1)]

    monkeypatch.setattr(embed_module, "lane_encoders", lanes)
    root = tmp_path / "cache"
    # Execute: 7 blocks of 2 batches; the slow lane has 3 of them (1.2 s), the other fails at once
    with pytest.raises(OSError, match="went away"):
        embed_corpus(corpus, OnnxEncoder(onnx_path), cache_root=root, block_size=16, batch_size=8)
    # Assert: the slow lane stopped at its next batch (without the stop it writes 3 blocks); no
    # merged file; what is on disk is whole, and a resume completes it
    directory = cache_dir(root, corpus, OnnxEncoder(onnx_path))
    assert not (directory / "features.npy").exists()
    assert len(done_blocks(directory)) <= 1
    monkeypatch.setattr(embed_module, "lane_encoders", lambda e, b: [e])
    again = embed_corpus(corpus, OnnxEncoder(onnx_path), cache_root=root, block_size=16)
    assert again.shape == (100, 24)
