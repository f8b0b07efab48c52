"""Run an exported device encoder (`<id>.onnx` + `<id>.json`) with ONNX Runtime on the builder.

The device simulation embeds the reference corpus with exactly the model a device class runs, so
the features it trains and evaluates on are the device's features (int8 error included).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from builder.errors import EncoderError
from plada.encoders import DEFAULT_CALIBRATION, EncoderInfo, read_encoder_info
from plada.errors import EncoderSpecError
from plada.ort_options import RUN_ROWS, configure


class OnnxEncoder:
    """An exported encoder: embed((B, 3, S, S) float32) -> (B, D) float32 with onnxruntime."""

    def __init__(
        self, path: Path, *, threads: int | None = None, max_batch: int = RUN_ROWS
    ) -> None:
        if not path.is_file():
            raise EncoderError(f"{path}: no such ONNX encoder file")
        try:
            self.info: EncoderInfo = read_encoder_info(path)
        except EncoderSpecError as exc:
            raise EncoderError(str(exc)) from exc
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1  # one sequential graph: a second pool only waits
        configure(options)  # no spinning (plada/ort_options.py)
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped exceptions
            raise EncoderError(f"{path}: onnxruntime cannot load it: {exc}") from exc
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if self.info.input_name not in inputs or self.info.output_name not in outputs:
            raise EncoderError(
                f"{path}: graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}, "
                f"sidecar says {self.info.input_name!r} -> {self.info.output_name!r}"
            )
        self.path = path
        self.max_batch = max_batch
        self.threads = threads  # None: ONNX Runtime's default (one per core)

    def with_threads(self, threads: int) -> OnnxEncoder:
        """Another session of the same file with ``threads`` intra-op threads (a lane)."""
        return OnnxEncoder(self.path, threads=threads, max_batch=self.max_batch)

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def size(self) -> int:
        return self.info.size

    @property
    def feature_dim(self) -> int:
        return self.info.feature_dim

    @property
    def preprocess(self) -> str:
        return self.info.preprocess

    @property
    def calibration(self) -> str | None:
        """What an int8 export was calibrated on (`corpus-68cb3417`), None for the default photo
        crops, fp32 files and exports older than the record."""
        label = (self.info.quantization or {}).get("calibration")
        return None if label in (None, DEFAULT_CALIBRATION) else str(label)

    @property
    def cache_key(self) -> str:
        """`onnx-<id>[-<calibration>]-<sha256[:16]>`: the hash alone tells files apart, the
        calibration in the name tells a reader which of two `lite0-64-int8` files it is."""
        tag = f"-{self.calibration}" if self.calibration else ""
        return f"onnx-{self.id}{tag}-{self.info.sha256[:16]}"

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, D) float32, in runs of at most `max_batch` rows."""
        expected = (3, self.size, self.size)
        if batch.ndim != 4 or batch.shape[1:] != expected or batch.dtype != np.float32:
            raise EncoderError(
                f"{self.id}: expected a (B, {', '.join(map(str, expected))}) float32 batch, "
                f"got {batch.shape} {batch.dtype}"
            )
        out = np.empty((len(batch), self.feature_dim), dtype=np.float32)
        for start in range(0, len(batch), self.max_batch):
            chunk = np.ascontiguousarray(batch[start : start + self.max_batch])
            (features,) = self.session.run([self.info.output_name], {self.info.input_name: chunk})
            out[start : start + len(chunk)] = np.asarray(features, dtype=np.float32).reshape(
                len(chunk), self.feature_dim
            )
        return out
