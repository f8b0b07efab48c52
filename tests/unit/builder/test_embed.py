"""The reference embedding cache with a small real ONNX encoder (no torch): correctness, reuse,
resumption, shards + merge, mismatch and corruption errors, and the `embed` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from builder.cli import main as build_main
from builder.encoders.load import Encoder, load_encoder
from builder.errors import EmbeddingCacheError, EncoderError
from builder.features.embed import (
    CacheMeta,
    cache_dir,
    cache_status,
    done_blocks,
    embed_corpus,
    embed_images,
    load_embeddings,
    merge_embeddings,
    open_embeddings,
    parse_shard,
    shard_blocks,
    shard_from_env,
)
from plada.corpus import Corpus
from tools.tiny.corpus import make_tiny_corpus
from tools.tiny.encoder import make_tiny_onnx_encoder

pytest.importorskip("onnxruntime")


class CountingEncoder:
    """Wraps an encoder and counts the images it embeds."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.images = 0
        self.id = inner.id
        self.size = inner.size
        self.feature_dim = inner.feature_dim
        self.preprocess = inner.preprocess
        self.cache_key = inner.cache_key

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.images += len(batch)
        return self.inner.embed(batch)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return make_tiny_corpus(tmp_path_factory.mktemp("corpus") / "c", num_images=100)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_onnx_encoder(tmp_path_factory.mktemp("enc"), size=32, feature_dim=16)


@pytest.fixture
def encoder(onnx_path: Path) -> CountingEncoder:
    return CountingEncoder(load_encoder(onnx_path))


def test_embed_corpus_matches_embedding_each_image(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare
    expected = embed_images(corpus.images(range(len(corpus))), encoder.inner)
    # Execute
    features = embed_corpus(
        corpus, encoder, cache_root=tmp_path, batch_size=7, block_size=16, progress=False
    )
    # Assert
    assert features.shape == (100, 16)
    assert features.dtype == np.float32
    assert isinstance(features, np.memmap)
    np.testing.assert_array_equal(features, expected)


def test_embed_corpus_second_run_recomputes_nothing(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare
    first = np.array(embed_corpus(corpus, encoder, cache_root=tmp_path, progress=False))
    encoder.images = 0
    # Execute
    second = embed_corpus(corpus, encoder, cache_root=tmp_path, progress=False)
    # Assert
    assert encoder.images == 0
    np.testing.assert_array_equal(first, second)


def test_embed_corpus_resumes_with_missing_blocks_only(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare: shard 0 of 2 done (blocks 0-2 of 7: 48 images), a stale temp file lying around
    embed_corpus(corpus, encoder, cache_root=tmp_path, block_size=16, shard=(0, 2), progress=False)
    directory = cache_dir(tmp_path, corpus, encoder)
    (directory / "blocks" / ".00000003.npy.123.tmp").write_bytes(b"half-written")
    encoder.images = 0
    # Execute
    features = embed_corpus(corpus, encoder, cache_root=tmp_path, block_size=16, progress=False)
    # Assert
    assert encoder.images == 100 - 48
    np.testing.assert_array_equal(features, embed_images(corpus.images(range(100)), encoder))


def test_embed_corpus_shards_and_merge_equal_one_run(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare
    whole = np.array(
        embed_corpus(corpus, encoder, cache_root=tmp_path / "one", block_size=9, progress=False)
    )
    # Execute
    parts = [
        embed_corpus(
            corpus, encoder, cache_root=tmp_path / "sh", block_size=9, shard=(i, 3), progress=False
        )
        for i in range(3)
    ]
    merged = merge_embeddings(corpus, encoder, cache_root=tmp_path / "sh")
    # Assert
    assert sum(len(p) for p in parts) == 100
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(merged, whole)
    assert done_blocks(cache_dir(tmp_path / "sh", corpus, encoder)) == set()  # blocks removed
    encoder.images = 0
    again = embed_corpus(
        corpus, encoder, cache_root=tmp_path / "sh", block_size=9, shard=(1, 3), progress=False
    )
    assert encoder.images == 0  # a shard re-run after the merge reads the merged file
    np.testing.assert_array_equal(again, parts[1])


def test_merge_embeddings_names_missing_blocks(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare
    embed_corpus(corpus, encoder, cache_root=tmp_path, block_size=10, shard=(0, 2), progress=False)
    # Execute / Assert
    with pytest.raises(EmbeddingCacheError, match=r"5 of 10 blocks missing \(5, 6, 7, 8, 9\)"):
        merge_embeddings(corpus, encoder, cache_root=tmp_path)
    with pytest.raises(EmbeddingCacheError, match=r"no features\.npy yet"):
        load_embeddings(corpus, encoder, cache_root=tmp_path)


def test_open_embeddings_rejects_another_corpus(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare
    embed_corpus(corpus, encoder, cache_root=tmp_path, progress=False)
    other = make_tiny_corpus(tmp_path / "other", num_images=100, seed=1)
    # Execute / Assert
    with pytest.raises(EmbeddingCacheError, match="corpus fingerprint"):
        open_embeddings(cache_dir(tmp_path, corpus, encoder), corpus=other, encoder=encoder)


def test_open_embeddings_rejects_another_encoder(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare
    embed_corpus(corpus, encoder, cache_root=tmp_path, progress=False)
    other = load_encoder(make_tiny_onnx_encoder(tmp_path / "enc2", size=32, feature_dim=16, seed=5))
    # Execute / Assert
    with pytest.raises(EmbeddingCacheError, match="encoder"):
        open_embeddings(cache_dir(tmp_path, corpus, encoder), corpus=corpus, encoder=other)


def test_embed_corpus_rejects_a_corrupt_block(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare: a block file of the wrong shape where shard 0's block should be
    embed_corpus(corpus, encoder, cache_root=tmp_path, block_size=50, shard=(1, 2), progress=False)
    block = cache_dir(tmp_path, corpus, encoder) / "blocks" / "00000000.npy"
    np.save(block, np.zeros((3, 16), np.float32))
    # Execute / Assert
    with pytest.raises(EmbeddingCacheError, match=r"00000000\.npy: has \(3, 16\)"):
        embed_corpus(corpus, encoder, cache_root=tmp_path, progress=False)


def test_cache_status_counts_done_blocks(
    corpus: Corpus, encoder: CountingEncoder, tmp_path: Path
) -> None:
    # Prepare
    assert cache_status(corpus, encoder, cache_root=tmp_path) is None
    embed_corpus(corpus, encoder, cache_root=tmp_path, block_size=25, shard=(0, 4), progress=False)
    # Execute
    status = cache_status(corpus, encoder, cache_root=tmp_path)
    # Assert
    assert status is not None
    assert (status.done, status.meta.num_blocks, status.complete) == (1, 4, False)


def test_embed_images_rejects_wrong_input_size(corpus: Corpus, onnx_path: Path) -> None:
    # Prepare
    encoder = load_encoder(onnx_path)
    # Execute / Assert
    with pytest.raises(EncoderError, match=r"expected a \(B, 3, 32, 32\) float32 batch"):
        encoder.embed(np.zeros((2, 3, 16, 16), np.float32))


@pytest.mark.parametrize(
    ("text", "expected"), [("0/1", (0, 1)), (" 3 / 8 ", (3, 8)), ("7/8", (7, 8))]
)
def test_parse_shard_accepts_i_of_n(text: str, expected: tuple[int, int]) -> None:
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["8/8", "1/0", "a/b", "3", "-1/2"])
def test_parse_shard_rejects_bad_text(text: str) -> None:
    with pytest.raises(EmbeddingCacheError, match="bad shard"):
        parse_shard(text)


def test_shard_blocks_cover_every_block_once() -> None:
    # Execute
    ranges = [list(shard_blocks(10, (i, 4))) for i in range(4)]
    # Assert
    assert [b for r in ranges for b in r] == list(range(10))
    assert list(shard_blocks(10, None)) == list(range(10))


def test_shard_from_env_reads_torchrun_and_slurm() -> None:
    assert shard_from_env({"RANK": "1", "WORLD_SIZE": "4"}) == (1, 4)
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}) == (2, 3)
    assert shard_from_env({}) is None


def test_cache_meta_counts_blocks() -> None:
    meta = CacheMeta("f" * 64, 100, "x", "k", 16, 30)
    assert meta.num_blocks == 4
    assert meta.block_rows(3) == range(90, 100)


def test_embed_cli_shards_merge_and_json(
    corpus: Corpus, onnx_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    base = ["embed", "--corpus", str(corpus.path), "--encoder", str(onnx_path)]
    base += ["--cache", str(tmp_path), "--block-size", "20", "--no-progress", "--json"]
    # Execute
    codes = [build_main([*base, "--shard", f"{i}/2"]) for i in range(2)]
    capsys.readouterr()
    merge_code = build_main([*base, "--merge"])
    summary = json.loads(capsys.readouterr().out)
    # Assert
    assert codes == [0, 0]
    assert merge_code == 0
    assert summary["shape"] == [100, 16]
    assert summary["corpus_fingerprint"] == corpus.fingerprint
    features = np.load(Path(summary["cache_dir"]) / "features.npy")
    expected = embed_images(corpus.images(range(100)), load_encoder(onnx_path))
    np.testing.assert_array_equal(features, expected)


def test_embed_cli_reports_incomplete_merge(
    corpus: Corpus, onnx_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    base = ["embed", "--corpus", str(corpus.path), "--encoder", str(onnx_path)]
    base += ["--cache", str(tmp_path), "--block-size", "20", "--no-progress"]
    build_main([*base, "--shard", "0/2"])
    # Execute
    code = build_main([*base, "--merge"])
    # Assert
    assert code == 1
    assert "incomplete: 3 of 5 blocks missing (2, 3, 4)" in capsys.readouterr().err


def test_embed_cli_names_a_missing_corpus(
    onnx_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    code = build_main(
        ["embed", "--corpus", str(tmp_path / "nope"), "--encoder", str(onnx_path), "--no-progress"]
    )
    # Assert
    assert code == 1
    assert str(tmp_path / "nope") in capsys.readouterr().err
