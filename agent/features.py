"""Encoder backends (onnxruntime, TFLite) and the on-disk feature cache of the reference corpus.

An encoder is a file exported by `plada-build export-encoder` plus its JSON sidecar `<stem>.json`
(`id`, `size`, `feature_dim`, `sha256` of the .onnx, `preprocess`). Every backend takes the NCHW
float32 batch from `plada.preprocess.preprocess_batch` and returns (B, D) float32 features.

Feature cache layout, one folder per (corpus fingerprint, encoder file hash, view)::

    <cache dir>/<fingerprint[:16]>-<encoder sha256[:16]>[-v<view digest[:16]>]/
        meta.json               what the folder belongs to (checked on open)
        block-000000.npy        features of images [0, block_size), float16 or float32
        block-000001.npy        ...
        rows-<16 hex>.bin       features computed on demand for one payload, by index
                                (agent.cache_rows: a payload's few thousand random indices
                                touch most blocks of a large corpus)

Blocks are written to a temporary file and renamed into place, so a crash leaves whole blocks
or none: `warm` resumes from the blocks that are missing. Each block carries a checksum and is
checked (hash, shape, finite values) on every read; a damaged one is recomputed
(agent.cache_blocks). When the corpus or the encoder changes, the key changes, the old folder is
removed and the cache is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from agent.cache_blocks import BlockFiles
from agent.cache_rows import DEFAULT_MAX_SEGMENTS, RowFiles
from agent.errors import EncoderBackendError, FeatureCacheError
from plada.atomic import write_bytes_atomic
from plada.corpus import Corpus
from plada.encoders import PREPROCESS_TF as _PREPROCESS
from plada.encoders import EncoderInfo as SidecarInfo
from plada.errors import EncoderSpecError
from plada.files import sha256_file
from plada.ort_options import configure
from plada.prefetch import prefetched_batches
from plada.preprocess import preprocess_batch
from plada.views import View, apply_view_all

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1


@dataclass(frozen=True)
class EncoderInfo:
    """An encoder file and what its sidecar says about it."""

    path: Path
    id: str
    size: int  # input side in pixels
    feature_dim: int
    sha256: str  # of the file at `path` (the file that runs, so the cache follows it)
    int8: bool = False

    @classmethod
    def load(cls, path: Path) -> EncoderInfo:
        """Read `<stem>.json` beside the encoder file; verify the .onnx hash it records."""
        path = Path(path)
        sidecar = path.with_suffix(".json")
        if not path.is_file():
            raise EncoderBackendError(f"encoder file {path} does not exist")
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise EncoderBackendError(
                f"encoder sidecar {sidecar} is missing (export with plada-build export-encoder)"
            ) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EncoderBackendError(f"encoder sidecar {sidecar}: unreadable ({exc})") from exc
        try:
            sidecar_info = SidecarInfo.from_json(meta, where=f"encoder sidecar {sidecar}")
        except EncoderSpecError as exc:
            raise EncoderBackendError(str(exc)) from exc
        if sidecar_info.preprocess != _PREPROCESS:
            raise EncoderBackendError(
                f"encoder sidecar {sidecar}: preprocess {sidecar_info.preprocess!r} is not "
                f"{_PREPROCESS!r} (plada.preprocess is the only input the agent produces)"
            )
        actual = sha256_file(path)
        expected_key = "sha256" if path.suffix == ".onnx" else "tflite_sha256"
        expected = meta.get(expected_key)
        if expected is None and expected_key == "tflite_sha256":
            # Only `export-encoder --tflite` records it, after its parity check: a .tflite
            # without it was never checked against the encoder this sidecar describes.
            raise EncoderBackendError(
                f"encoder sidecar {sidecar.name} records no tflite_sha256 for {path.name}: "
                "export it with `plada-build export-encoder --model M --size S --tflite-only "
                f"--out {path.parent}`"
            )
        if expected is not None and expected != actual:
            raise EncoderBackendError(
                f"encoder file {path}: sha256 {actual[:16]}... does not match {expected_key} "
                f"{str(expected)[:16]}... in {sidecar.name} (corrupt or replaced file)"
            )
        return cls(
            path=path,
            id=sidecar_info.id,
            size=sidecar_info.size,
            feature_dim=sidecar_info.feature_dim,
            sha256=actual,
            int8=sidecar_info.int8,
        )


class FeatureExtractor(Protocol):
    """A frozen image encoder: preprocessed NCHW float32 batch -> (B, D) float32 features."""

    info: EncoderInfo

    def embed(self, batch: np.ndarray) -> np.ndarray: ...


def _check_output(info: EncoderInfo, out: np.ndarray, batch: int) -> np.ndarray:
    if out.ndim != 2 or out.shape != (batch, info.feature_dim):
        raise EncoderBackendError(
            f"encoder {info.path.name} returned shape {out.shape}, expected ({batch}, "
            f"{info.feature_dim}) per its sidecar"
        )
    return np.ascontiguousarray(out, dtype=np.float32)


class OrtExtractor:
    """The encoder on onnxruntime (CPU), with a configurable thread count.

    The session is created on first use: a task served wholly from the feature cache never
    pays for loading the encoder (time and memory).
    """

    def __init__(self, info: EncoderInfo, *, threads: int = 2) -> None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise EncoderBackendError(
                f"encoder backend onnxruntime is not installed: {exc}"
            ) from exc
        self.info = info
        self.threads = threads
        self._session: Any = None

    def _open(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        configure(options)  # no spinning: the agent shares its cores (plada/ort_options.py)
        options.log_severity_level = 3
        try:
            return ort.InferenceSession(
                str(self.info.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise EncoderBackendError(f"onnxruntime cannot load {self.info.path}: {exc}") from exc

    def embed(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            self._session = self._open()
        session = self._session
        name_in, name_out = session.get_inputs()[0].name, session.get_outputs()[0].name
        (out,) = session.run([name_out], {name_in: batch})
        return _check_output(self.info, np.asarray(out), batch.shape[0])


def _tflite_interpreter_class() -> Any:
    """ai-edge-litert's Interpreter, else tflite-runtime's; EncoderBackendError if neither."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter

        return Interpreter
    except ImportError as exc:
        raise EncoderBackendError(
            "encoder backend tflite needs ai-edge-litert (pip install 'plada[tflite]') or "
            "tflite-runtime; neither is installed"
        ) from exc


class TfliteExtractor:
    """The encoder on TFLite (LiteRT). Takes NCHW like every backend; NHWC models are fed NHWC."""

    def __init__(self, info: EncoderInfo, *, threads: int = 2) -> None:
        interpreter_class = _tflite_interpreter_class()
        self.info = info
        try:
            self._interpreter = interpreter_class(model_path=str(info.path), num_threads=threads)
        except Exception as exc:  # the interpreter raises ValueError/RuntimeError
            raise EncoderBackendError(f"tflite cannot load {info.path}: {exc}") from exc
        detail = self._interpreter.get_input_details()[0]
        self._input_index = int(detail["index"])
        self._nhwc = int(detail["shape"][-1]) == 3 and int(detail["shape"][1]) != 3
        self._output_index = int(self._interpreter.get_output_details()[0]["index"])
        self._batch = -1

    def embed(self, batch: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(batch.transpose(0, 2, 3, 1)) if self._nhwc else batch
        try:
            if data.shape[0] != self._batch:
                self._batch = -1  # until the resize has worked
                self._interpreter.resize_tensor_input(self._input_index, list(data.shape))
                self._interpreter.allocate_tensors()
                self._batch = data.shape[0]
            self._interpreter.set_tensor(self._input_index, data)
            self._interpreter.invoke()
        except (RuntimeError, ValueError) as exc:  # what the interpreter raises
            # e.g. a file converted at a fixed batch whose graph bakes that batch into a RESHAPE
            raise EncoderBackendError(
                f"tflite cannot run {self.info.path.name} on a batch of {data.shape[0]}: {exc}"
            ) from exc
        out = self._interpreter.get_tensor(self._output_index)
        return _check_output(self.info, np.array(out), batch.shape[0])


def load_extractor(
    path: Path, *, backend: str = "onnxruntime", threads: int = 2
) -> FeatureExtractor:
    """The encoder at `path` on the named backend ("onnxruntime" | "tflite")."""
    info = EncoderInfo.load(path)
    if backend == "onnxruntime":
        return OrtExtractor(info, threads=threads)
    if backend == "tflite":
        return TfliteExtractor(info, threads=threads)
    raise EncoderBackendError(
        f"unknown encoder backend {backend!r}; expected onnxruntime or tflite"
    )


def embed_images(
    extractor: FeatureExtractor, images: Sequence[Image.Image], *, batch_size: int = 32
) -> np.ndarray:
    """PIL images -> (N, D) float32 features, preprocessed with plada.preprocess."""
    dim = extractor.info.feature_dim
    out = np.empty((len(images), dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        out[start : start + len(chunk)] = extractor.embed(
            preprocess_batch(chunk, size=extractor.info.size)
        )
    return out


@dataclass(frozen=True)
class WarmReport:
    blocks_total: int
    blocks_computed: int
    images_embedded: int
    seconds: float
    path: Path


class FeatureCache:
    """Cached encoder features of a whole corpus, in blocks; see the module docstring."""

    def __init__(
        self,
        root: Path,
        corpus: Corpus,
        extractor: FeatureExtractor,
        *,
        dtype: str = "float16",
        block_size: int = 1024,
        batch_size: int = 32,
        view: View | None = None,
        max_row_segments: int = DEFAULT_MAX_SEGMENTS,
    ) -> None:
        if dtype not in ("float16", "float32"):
            raise FeatureCacheError(f"cache dtype must be float16 or float32, got {dtype!r}")
        if block_size < 1:
            raise FeatureCacheError(f"cache block_size must be >= 1, got {block_size}")
        self.root = Path(root)
        self.corpus = corpus
        self.extractor = extractor
        self.dtype = np.dtype(dtype)
        self.block_size = block_size
        self.batch_size = batch_size
        self.view = view  # applied to every image before embedding (a payload's view)
        self.key = f"{corpus.fingerprint[:16]}-{extractor.info.sha256[:16]}"
        if view is not None:  # features under a view never share a folder with unviewed ones
            self.key += f"-v{view.digest[:16]}"
        self.path = self.root / self.key
        self.num_images = len(corpus)
        self.num_blocks = (self.num_images + block_size - 1) // block_size
        self._blocks = BlockFiles(
            self.path, rows_of=self._block_rows, dim=extractor.info.feature_dim, dtype=self.dtype
        )
        self._meta = {
            "format": CACHE_FORMAT,
            "corpus_fingerprint": corpus.fingerprint,
            "corpus_size": self.num_images,
            "encoder_id": extractor.info.id,
            "encoder_sha256": extractor.info.sha256,
            "feature_dim": extractor.info.feature_dim,
            "dtype": dtype,
            "block_size": block_size,
        }
        if view is not None:  # absent without a view: existing caches stay valid
            self._meta["view_digest"] = view.digest
        self._rows = RowFiles(
            self.path,
            dim=extractor.info.feature_dim,
            dtype=self.dtype,
            max_segments=max_row_segments,
        )
        self._prepare()

    # ------------------------------------------------------------------ layout
    def _prepare(self) -> None:
        """Create the folder, or wipe it if its meta.json describes something else."""
        meta_path = self.path / "meta.json"
        if meta_path.is_file():
            try:
                existing = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                existing = None
            if existing == self._meta:
                return
            logger.warning(
                "feature cache %s does not match this corpus/encoder: rebuilding", self.path
            )
            shutil.rmtree(self.path)
        elif self.path.exists():
            shutil.rmtree(self.path)  # a folder without meta.json: an interrupted creation
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{self.key}."))
        try:
            write_bytes_atomic(tmp / "meta.json", json.dumps(self._meta, indent=2).encode())
            os.replace(tmp, self.path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def remove_stale(self) -> list[Path]:
        """Delete cache folders of other corpora / encoders under the root; returns them.
        Folders of views over this corpus and encoder are kept (payloads still use them)."""
        removed = []
        base = f"{self.corpus.fingerprint[:16]}-{self.extractor.info.sha256[:16]}"
        for child in self.root.iterdir():
            if child.is_dir() and child != self.path and not child.name.startswith(base):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
        return removed

    def _block_path(self, block: int) -> Path:
        return self._blocks.path(block)

    def _block_rows(self, block: int) -> int:
        return min(self.block_size, self.num_images - block * self.block_size)

    def _load_block(self, block: int) -> np.ndarray | None:
        """The block's features, or None if absent; a damaged block is deleted (recomputed)."""
        return self._blocks.read(block)

    def missing_blocks(self) -> list[int]:
        return [b for b in range(self.num_blocks) if not self._block_path(b).is_file()]

    def is_complete(self) -> bool:
        return not self.missing_blocks()

    # ------------------------------------------------------------------ work
    def _embed_indices(self, indices: Sequence[int]) -> np.ndarray:
        """(len(indices), D) float32; the next batch is read and preprocessed in a thread while
        the encoder runs (plada.prefetch), so a warm-up uses both of a small device's cores."""
        size, dim = self.extractor.info.size, self.extractor.info.feature_dim
        features = np.empty((len(indices), dim), dtype=np.float32)

        def load(span: Sequence[int], buffer: np.ndarray | None) -> np.ndarray:
            # the payload's view, if any, before the one preprocessing every backend shares
            images = apply_view_all(self.view, self.corpus.images([indices[i] for i in span]))
            return preprocess_batch(images, size=size, out=buffer)

        positions = range(len(indices))
        spans = [positions[i : i + self.batch_size] for i in positions[:: self.batch_size]]
        for span, batch in prefetched_batches(load, spans):
            features[span[0] : span[0] + len(span)] = self.extractor.embed(batch)
        bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
        if bad.size:  # never cached or trained on: the encoder file or these images are damaged
            named = [int(indices[i]) for i in bad[:8]]
            raise FeatureCacheError(
                f"encoder {self.extractor.info.id} gave non-finite features for corpus images "
                f"{named}{' ...' if bad.size > 8 else ''}"
            )
        return features

    def warm(
        self,
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> WarmReport:
        """Embed every block that is missing (resumes after a crash); progress(done, total)."""
        import time

        start = time.perf_counter()
        missing = self.missing_blocks()
        done_blocks = self.num_blocks - len(missing)
        computed = 0
        embedded = 0
        for block in missing:
            if should_stop is not None and should_stop():
                break
            lo = block * self.block_size
            rows = self._block_rows(block)
            features = self._embed_indices(range(lo, lo + rows))  # (rows, D) float32
            self._blocks.write(block, features.astype(self.dtype))
            computed += 1
            embedded += rows
            if progress is not None:
                progress(done_blocks + computed, self.num_blocks)
        return WarmReport(
            blocks_total=self.num_blocks,
            blocks_computed=computed,
            images_embedded=embedded,
            seconds=time.perf_counter() - start,
            path=self.path,
        )

    def features(self, indices: np.ndarray) -> tuple[np.ndarray, int]:
        """(k, D) float32 features of corpus `indices` and how many had to be computed.

        Whole blocks serve what they can (a warmed device), then the row segments of earlier
        payloads (agent.cache_rows); the rest is embedded now and stored as a new segment, so
        the next apply of the same or overlapping indices embeds nothing.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self.num_images):
            bad = int(indices[(indices < 0) | (indices >= self.num_images)][0])
            raise FeatureCacheError(f"index {bad} is outside the corpus (size {self.num_images})")
        dim = self.extractor.info.feature_dim
        out = np.empty((indices.size, dim), dtype=np.float32)
        have = np.zeros(indices.size, dtype=bool)
        blocks = indices // self.block_size
        for block in np.unique(blocks):
            if not self._block_path(int(block)).is_file():
                continue  # (a stat, not a read: most blocks of a large corpus are absent)
            data = self._load_block(int(block))
            if data is None:
                continue
            where = np.flatnonzero(blocks == block)
            out[where] = data[indices[where] - int(block) * self.block_size]
            have[where] = True
        if not have.all():
            self._rows.read(indices, out, have)
        missing = np.flatnonzero(~have)
        if missing.size:
            # through the cache dtype too, so results never depend on what was cached
            computed = self._embed_indices(indices[missing].tolist()).astype(self.dtype)
            out[missing] = computed  # widened to float32 on assignment
            try:
                self._rows.write(indices[missing], computed)
            except OSError as exc:  # a full disk must not fail the apply: the rows are in hand
                logger.warning("feature cache rows not stored (%s): recomputed next time", exc)
        return out, int(missing.size)
