"""The reference embedding cache: the whole corpus embedded once per encoder, resumable, shardable.

Layout (one folder per corpus and encoder, so nothing can be mixed up):

    <cache_root>/<corpus fingerprint[:16]>/<encoder.cache_key>/
        meta.json                 corpus fingerprint + size, encoder id + cache key, D, block size
        blocks/00000000.npy       rows [0, B) as (B, D) float32; one file per fixed-size block
        blocks/00000001.npy       ...
        features.npy              (N, D) float32, written by the merge step; blocks are then removed

Every file is written to a temporary name and renamed into place, so a block file that exists is
complete: a killed run resumes with the missing blocks only, and never reads a half-written one.
Shards (`shard=(i, n)`) embed the contiguous block range [i * nb // n, (i + 1) * nb // n) into the
same folder, e.g. from torchrun ranks or a Slurm job array on a shared file system; the merge
(`merge_embeddings`) checks that every block is there and joins them into features.npy.
`cache_key` (builder/encoders/load.py) is backend + encoder id + weights hash: a torch Lite0 and
its ONNX export get separate caches, and a changed weights file or re-export gets a fresh one.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from builder.encoders.load import Encoder
from builder.errors import EmbeddingCacheError, EncoderError
from builder.features.lanes import lane_encoders, split_contiguous
from plada.atomic import atomic_path, save_npy_atomic, write_bytes_atomic
from plada.encoders import PREPROCESS_TF
from plada.prefetch import prefetched_batches
from plada.preprocess import preprocess_batch

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
DEFAULT_BATCH_SIZE = 256
DEFAULT_BLOCK_SIZE = 2048
FEATURES_FILE = "features.npy"
META_FILE = "meta.json"
_BLOCK_RE = re.compile(r"^[0-9]{8}\.npy$")


class CorpusLike(Protocol):
    """What the cache needs from plada.corpus.Corpus."""

    @property
    def fingerprint(self) -> str: ...

    def __len__(self) -> int: ...

    def images(self, indices: Sequence[int]) -> list[Image.Image]: ...


@dataclass(frozen=True)
class CacheMeta:
    corpus_fingerprint: str
    corpus_size: int
    encoder_id: str
    encoder_cache_key: str
    feature_dim: int
    block_size: int
    preprocess: str = PREPROCESS_TF
    dtype: str = "float32"
    format: int = CACHE_FORMAT

    @property
    def num_blocks(self) -> int:
        return -(-self.corpus_size // self.block_size)

    def block_rows(self, block: int) -> range:
        start = block * self.block_size
        return range(start, min(self.corpus_size, start + self.block_size))


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/8"` -> (2, 8); shard i of n, 0 <= i < n."""
    match = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
    if match is None:
        raise EmbeddingCacheError(f"bad shard {text!r}: expected i/n, e.g. 0/4")
    index, count = int(match[1]), int(match[2])
    if count < 1 or not 0 <= index < count:
        raise EmbeddingCacheError(f"bad shard {text!r}: need 0 <= i < n")
    return index, count


def shard_from_env(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """The shard of this process under torchrun (RANK/WORLD_SIZE) or a Slurm job array."""
    env = dict(os.environ) if env is None else env
    for index_key, count_key in (
        ("RANK", "WORLD_SIZE"),
        ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
    ):
        if index_key in env and count_key in env:
            return parse_shard(f"{env[index_key]}/{env[count_key]}")
    return None


def shard_blocks(num_blocks: int, shard: tuple[int, int] | None) -> range:
    """Contiguous block range of one shard (all blocks when shard is None)."""
    if shard is None:
        return range(num_blocks)
    index, count = shard
    return range(index * num_blocks // count, (index + 1) * num_blocks // count)


def cache_dir(cache_root: Path, corpus: CorpusLike, encoder: Encoder) -> Path:
    return cache_root / corpus.fingerprint[:16] / encoder.cache_key


def _meta_for(corpus: CorpusLike, encoder: Encoder, block_size: int) -> CacheMeta:
    return CacheMeta(
        corpus_fingerprint=corpus.fingerprint,
        corpus_size=len(corpus),
        encoder_id=encoder.id,
        encoder_cache_key=encoder.cache_key,
        feature_dim=encoder.feature_dim,
        block_size=block_size,
        preprocess=encoder.preprocess,
    )


def read_meta(directory: Path) -> CacheMeta:
    path = directory / META_FILE
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return CacheMeta(**obj)
    except FileNotFoundError as exc:
        raise EmbeddingCacheError(f"{directory}: not an embedding cache (no {META_FILE})") from exc
    except (OSError, ValueError, TypeError) as exc:
        raise EmbeddingCacheError(f"{path}: unreadable cache metadata: {exc}") from exc


def check_meta(directory: Path, expected: CacheMeta, *, compare_block_size: bool = True) -> None:
    """EmbeddingCacheError naming the first field where the cache differs from what is asked."""
    found = read_meta(directory)
    labels = {
        "corpus_fingerprint": "corpus fingerprint",
        "corpus_size": "corpus size",
        "encoder_cache_key": "encoder (backend-id-weights)",
        "encoder_id": "encoder id",
        "feature_dim": "feature dimension",
        "preprocess": "preprocessing",
        "dtype": "dtype",
        "format": "cache format",
    }
    if compare_block_size:
        labels["block_size"] = "block size"
    for key, label in labels.items():
        want, have = getattr(expected, key), getattr(found, key)
        if want != have:
            raise EmbeddingCacheError(
                f"embedding cache {directory} does not match: {label} is {have!r} there, "
                f"{want!r} here; use another cache folder or delete that one"
            )


def _prepare(directory: Path, meta: CacheMeta) -> CacheMeta:
    """Create the cache folder with its meta.json, or check an existing one. Returns the meta in
    force (an existing cache keeps its block size)."""
    (directory / "blocks").mkdir(parents=True, exist_ok=True)
    if (directory / META_FILE).exists():
        found = read_meta(directory)
        check_meta(directory, meta, compare_block_size=False)
        return found
    text = json.dumps(asdict(meta), indent=2, sort_keys=True) + "\n"
    write_bytes_atomic(directory / META_FILE, text.encode("utf-8"))
    return meta


def _block_path(directory: Path, block: int) -> Path:
    return directory / "blocks" / f"{block:08d}.npy"


def _load_block(directory: Path, meta: CacheMeta, block: int) -> np.ndarray:
    path = _block_path(directory, block)
    try:
        array: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EmbeddingCacheError(f"{path}: unreadable block ({exc}); delete it to redo") from exc
    rows = len(meta.block_rows(block))
    if array.shape != (rows, meta.feature_dim) or array.dtype != np.float32:
        raise EmbeddingCacheError(
            f"{path}: has {array.shape} {array.dtype}, expected ({rows}, {meta.feature_dim}) "
            "float32; delete it to redo"
        )
    return array


def done_blocks(directory: Path) -> set[int]:
    """Blocks whose file exists (every existing block file is complete: atomic rename)."""
    blocks = directory / "blocks"
    if not blocks.is_dir():
        return set()
    return {int(p.name[:8]) for p in blocks.iterdir() if _BLOCK_RE.match(p.name)}


@dataclass(frozen=True)
class CacheStatus:
    directory: Path
    meta: CacheMeta
    done: int  # blocks on disk
    complete: bool  # features.npy written

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "num_blocks": self.meta.num_blocks,
            "done_blocks": self.done,
            "complete": self.complete,
            **asdict(self.meta),
        }


def cache_status(corpus: CorpusLike, encoder: Encoder, *, cache_root: Path) -> CacheStatus | None:
    directory = cache_dir(cache_root, corpus, encoder)
    if not (directory / META_FILE).exists():
        return None
    meta = read_meta(directory)
    check_meta(directory, _meta_for(corpus, encoder, meta.block_size))
    return CacheStatus(
        directory, meta, len(done_blocks(directory)), (directory / FEATURES_FILE).exists()
    )


def preprocess_for(
    encoder: Encoder, images: Sequence[Image.Image], *, out: np.ndarray | None = None
) -> np.ndarray:
    """The encoder's input batch for these images (plada/preprocess.py, one definition)."""
    if encoder.preprocess != PREPROCESS_TF:
        raise EncoderError(f"{encoder.id}: unknown preprocessing {encoder.preprocess!r}")
    return preprocess_batch(images, size=encoder.size, out=out)


def embed_images(
    images: Sequence[Image.Image], encoder: Encoder, *, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """Images -> (B, D) float32 features, in batches."""
    out = np.empty((len(images), encoder.feature_dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        out[start : start + len(chunk)] = encoder.embed(preprocess_for(encoder, chunk))
    return out


def _spans(meta: CacheMeta, blocks: Sequence[int], batch_size: int) -> list[range]:
    """Consecutive batches of rows, none straddling two blocks."""
    spans = []
    for block in blocks:
        rows = meta.block_rows(block)
        spans += [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    return spans


def _embed_blocks(
    corpus: CorpusLike,
    encoder: Encoder,
    meta: CacheMeta,
    directory: Path,
    blocks: Sequence[int],
    batch_size: int,
    advance: Callable[[int], None],
) -> None:
    """Embed ``blocks`` and write each as it completes (atomic rename: a block file is whole)."""

    # one prefetching stream over the blocks, so no block starts with a cold pipe
    def load(span: Sequence[int], buffer: np.ndarray | None) -> np.ndarray:
        return preprocess_for(encoder, corpus.images(list(span)), out=buffer)

    block, rows = -1, range(0)
    out = np.empty((0, meta.feature_dim), dtype=np.float32)
    for span, batch in prefetched_batches(load, _spans(meta, blocks, batch_size)):
        if span[0] // meta.block_size != block:
            block = span[0] // meta.block_size
            rows = meta.block_rows(block)
            out = np.empty((len(rows), meta.feature_dim), dtype=np.float32)  # (rows, D)
        features = encoder.embed(batch)  # (b, D)
        if features.shape != (len(span), meta.feature_dim):
            raise EncoderError(
                f"{encoder.id}: embed returned {features.shape}, "
                f"expected ({len(span)}, {meta.feature_dim})"
            )
        first = span[0] - rows.start
        out[first : first + len(span)] = features
        advance(len(span))
        if span[-1] == rows[-1]:  # the block is complete
            save_npy_atomic(_block_path(directory, block), out)


def embed_corpus(
    corpus: CorpusLike,
    encoder: Encoder,
    *,
    cache_root: Path,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> np.ndarray:
    """Embed the whole corpus (or one shard of it) into the cache; return the features.

    Without a shard: (N, D) float32, memory-mapped from features.npy (merged when complete).
    With a shard: that shard's (rows, D) float32; run `merge_embeddings` once all shards are done.
    Blocks already on disk are never recomputed; an existing cache keeps its block size.
    """
    if batch_size < 1:
        raise EmbeddingCacheError(f"batch_size must be >= 1, got {batch_size}")
    directory = cache_dir(cache_root, corpus, encoder)
    meta = _prepare(directory, _meta_for(corpus, encoder, block_size))
    blocks = shard_blocks(meta.num_blocks, shard)
    if (directory / FEATURES_FILE).exists():  # merged already (its blocks are gone)
        features: np.ndarray = load_embeddings(corpus, encoder, cache_root=cache_root)
        if shard is None:
            return features
        if not blocks:
            return np.zeros((0, meta.feature_dim), dtype=np.float32)
        start, stop = meta.block_rows(blocks[0]).start, meta.block_rows(blocks[-1]).stop
        return np.asarray(features[start:stop])
    done = done_blocks(directory)
    todo = [b for b in blocks if b not in done]
    total_rows = sum(len(meta.block_rows(b)) for b in blocks)
    done_rows = total_rows - sum(len(meta.block_rows(b)) for b in todo)
    logger.info(
        "embedding %s with %s: %d of %d blocks to do (shard %s)",
        corpus.fingerprint[:16],
        encoder.id,
        len(todo),
        len(blocks),
        shard,
    )
    from tqdm import tqdm

    lanes = lane_encoders(encoder, len(todo))
    with tqdm(
        total=total_rows,
        initial=done_rows,
        disable=not progress,
        unit="img",
        desc=f"embed {encoder.id}" + (f" ({len(lanes)} lanes)" if len(lanes) > 1 else ""),
        dynamic_ncols=True,
    ) as bar:
        progress_lock = threading.Lock()
        halt = threading.Event()  # set when one lane fails or the caller is interrupted

        def advance(rows: int) -> None:
            if halt.is_set():
                raise EmbeddingCacheError("embedding stopped: another lane failed")
            with progress_lock:
                bar.update(rows)

        parts = split_contiguous(todo, len(lanes))
        with ThreadPoolExecutor(len(lanes), thread_name_prefix="embed-lane") as pool:
            runs = [
                pool.submit(_embed_blocks, corpus, lane, meta, directory, part, batch_size, advance)
                for lane, part in zip(lanes, parts, strict=True)
            ]
            try:
                for run in as_completed(runs):  # the first failure, whichever lane it is in
                    run.result()  # a lane's failure is the embedding's; finished blocks stay
            except BaseException:
                halt.set()  # the other lanes stop at their next batch instead of finishing
                raise
    if shard is None:
        return merge_embeddings(corpus, encoder, cache_root=cache_root)
    if not blocks:
        return np.zeros((0, meta.feature_dim), dtype=np.float32)
    return np.concatenate([_load_block(directory, meta, b) for b in blocks])


def merge_embeddings(
    corpus: CorpusLike, encoder: Encoder, *, cache_root: Path, keep_blocks: bool = False
) -> np.ndarray:
    """Join every block into features.npy (atomically) and return it memory-mapped.

    EmbeddingCacheError names the missing blocks (and the shards that own them) if any is absent.
    """
    directory = cache_dir(cache_root, corpus, encoder)
    if not (directory / META_FILE).exists():
        raise EmbeddingCacheError(
            f"no embedding cache for corpus {corpus.fingerprint[:16]} and encoder "
            f"{encoder.cache_key} under {cache_root}: run `plada-build embed` first"
        )
    meta = read_meta(directory)
    check_meta(directory, _meta_for(corpus, encoder, meta.block_size))
    final = directory / FEATURES_FILE
    if not final.exists():
        missing = sorted(set(range(meta.num_blocks)) - done_blocks(directory))
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise EmbeddingCacheError(
                f"embedding cache {directory} is incomplete: {len(missing)} of "
                f"{meta.num_blocks} blocks missing ({shown}); run the remaining shards "
                "or `plada-build embed` without --shard"
            )
        # Written block by block with plain writes: a writable mapping of the whole (N, D)
        # file kept every dirty page resident (5 GB at 1M images x 1280).
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype("<f4")),
            "fortran_order": False,
            "shape": (meta.corpus_size, meta.feature_dim),
        }
        with atomic_path(final) as tmp, tmp.open("wb") as out:
            np.lib.format.write_array_header_1_0(out, header)
            for block in range(meta.num_blocks):  # each (rows, D), checked by _load_block
                out.write(np.ascontiguousarray(_load_block(directory, meta, block), "<f4").data)
    if not keep_blocks:
        for path in (directory / "blocks").glob("*"):
            path.unlink(missing_ok=True)
    return load_embeddings(corpus, encoder, cache_root=cache_root)


def load_embeddings(corpus: CorpusLike, encoder: Encoder, *, cache_root: Path) -> np.ndarray:
    """The finished (N, D) float32 features, memory-mapped; EmbeddingCacheError if absent."""
    directory = cache_dir(cache_root, corpus, encoder)
    return open_embeddings(directory, corpus=corpus, encoder=encoder)


def open_embeddings(directory: Path, *, corpus: CorpusLike, encoder: Encoder) -> np.ndarray:
    """Open a cache folder given explicitly; it must match this corpus and encoder exactly."""
    meta = read_meta(directory)
    check_meta(directory, _meta_for(corpus, encoder, meta.block_size))
    final = directory / FEATURES_FILE
    if not final.exists():
        raise EmbeddingCacheError(
            f"embedding cache {directory} has no {FEATURES_FILE} yet "
            f"({len(done_blocks(directory))} of {meta.num_blocks} blocks): embed or merge first"
        )
    try:
        features: np.ndarray = np.load(final, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise EmbeddingCacheError(f"{final}: unreadable ({exc})") from exc
    if features.shape != (meta.corpus_size, meta.feature_dim) or features.dtype != np.float32:
        raise EmbeddingCacheError(
            f"{final}: has {features.shape} {features.dtype}, expected "
            f"({meta.corpus_size}, {meta.feature_dim}) float32"
        )
    return features
