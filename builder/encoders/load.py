"""Image encoders behind one interface: PyTorch (the builder's teacher), ONNX (a device export).

Every encoder takes the NCHW float32 batch that `plada.preprocess` makes (or the named variant its
`preprocess` attribute gives) and returns (B, D) float32 features:

    encoder = load_encoder("lite0-64")              # PyTorch EfficientNet-Lite0 at 64 px
    encoder = load_encoder("lite0-64-int8")         # the device's int8 ONNX export (made once)
    encoder = load_encoder(Path("enc/lite1-96.onnx"))
    feats = encoder.embed(preprocess_batch(images, size=encoder.size))   # (B, D) float32

`cache_key` identifies the exact features an encoder computes (backend + id + weights hash): the
embedding cache (builder/features/embed.py) is keyed by it, so a torch and an ONNX encoder of the
same spec never share cached features. torch and onnxruntime are imported only when such an
encoder is built.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from builder.errors import EncoderError
from plada.encoders import EncoderSpec, parse_encoder_spec
from plada.errors import EncoderSpecError

ENCODER_DIR_ENV = "PLADA_ENCODER_DIR"


@runtime_checkable
class Encoder(Protocol):
    """What the embedding cache, the teacher and the device simulation need from an encoder."""

    @property
    def id(self) -> str:
        """Spec-like name, e.g. `lite0-64` or `lite0-64-int8`."""
        ...

    @property
    def size(self) -> int:
        """Square input size in pixels."""
        ...

    @property
    def feature_dim(self) -> int: ...

    @property
    def preprocess(self) -> str:
        """Name of the preprocessing in plada/preprocess.py (`tf-127-128` for every Lite model)."""
        ...

    @property
    def cache_key(self) -> str:
        """Backend + id + weights hash: equal keys promise equal features."""
        ...

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """(B, 3, S, S) float32 -> (B, D) float32."""
        ...


def default_encoder_dir() -> Path:
    """Where `load_encoder("lite0-64-int8")` keeps exported device encoders between runs."""
    env = os.environ.get(ENCODER_DIR_ENV)
    if env:
        return Path(env)
    return Path.home() / ".cache" / "plada" / "encoders"


def load_encoder(
    spec_or_path: str | Path | EncoderSpec,
    *,
    encoder_dir: Path | None = None,
    backend: str = "auto",
    threads: int | None = None,
    device: str = "cpu",
) -> Encoder:
    """A spec (`lite0-64`, `lite0-64-int8`), an EncoderSpec, or a path to an exported `.onnx`.

    backend: `auto` (torch for float specs, ONNX for int8 specs and paths), `torch` or `onnx`.
    device: torch device for torch encoders (`cpu`, `cuda:0`, ...); ONNX runs on the CPU.
    ONNX for a spec uses `<encoder_dir>/<id>.onnx`, exporting it first (with the parity check of
    builder/encoders/export.py) if it is missing, so simulations use exactly what the device runs.
    """
    if backend not in ("auto", "torch", "onnx"):
        raise EncoderError(f"unknown encoder backend {backend!r}: use auto, torch or onnx")
    if isinstance(spec_or_path, Path) or (
        isinstance(spec_or_path, str) and spec_or_path.endswith(".onnx")
    ):
        from builder.encoders.onnx_encoder import OnnxEncoder

        if backend == "torch":
            raise EncoderError(f"{spec_or_path}: an .onnx file cannot run on the torch backend")
        return OnnxEncoder(Path(spec_or_path), threads=threads)
    try:
        spec = (
            spec_or_path
            if isinstance(spec_or_path, EncoderSpec)
            else parse_encoder_spec(spec_or_path)
        )
    except EncoderSpecError as exc:
        raise EncoderError(str(exc)) from exc
    if backend == "torch" and spec.int8:
        raise EncoderError(f"{spec.id}: int8 encoders run on ONNX Runtime, not torch")
    if backend == "onnx" or spec.int8 or spec.model == "opennsfw":
        from builder.encoders.export import ensure_exported
        from builder.encoders.onnx_encoder import OnnxEncoder

        path = ensure_exported(spec, out_dir=encoder_dir or default_encoder_dir())
        return OnnxEncoder(path, threads=threads)
    from builder.encoders.torch_encoder import TorchEncoder

    return TorchEncoder(spec, threads=threads, device=device)
