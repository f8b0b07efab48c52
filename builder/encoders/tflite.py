"""TFLite fp32 export of a device encoder, beside its ONNX export and sharing its sidecar.

TFLite = `litert_torch.convert` in the optional .venv-litert (`make setup-litert`): `export_tflite`
writes `<id>.tflite` beside the ONNX export and adds `tflite_sha256` + `tflite_parity` to its
sidecar, after running the file on LiteRT as the agent does and checking it against PyTorch.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from builder.encoders.parity import cosine_rows, real_images
from builder.errors import EncoderError
from plada.encoders import (
    EncoderInfo,
    EncoderSpec,
    encoder_info_path,
    read_encoder_info,
    sha256_file,
    write_encoder_info,
)
from plada.errors import EncoderSpecError
from plada.preprocess import preprocess_batch

# TFLite (XNNPACK) sums in another order than PyTorch: Lite0-64 measured ~1e-4 max abs diff on
# features of magnitude ~1-10 (cosine 1 - 1e-9); a bar 10x above that still catches a wrong
# layout or preprocessing, which cost far more.
TFLITE_MAX_ABS_DIFF = 1e-3


def kept_tflite_record(onnx_path: Path) -> dict[str, Any]:
    """The `tflite_*` keys of the current sidecar when the `.tflite` beside it still has the
    recorded sha256 (so re-exporting the ONNX keeps it verifiable), else {} (the agent then
    refuses that .tflite until it is exported again)."""
    tflite = onnx_path.with_suffix(".tflite")
    sidecar = encoder_info_path(onnx_path)
    if not (tflite.exists() and sidecar.exists()):
        return {}
    try:
        record = TfliteRecord.model_validate_json(sidecar.read_bytes())
    except (OSError, ValidationError):
        return {}
    if record.tflite_sha256 != sha256_file(tflite):
        return {}
    return record.model_dump(exclude_none=True)


class TfliteRecord(BaseModel):
    """The `tflite_*` keys of a sidecar, read on their own (the rest may be from an old export)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    tflite_sha256: str
    tflite_parity: dict[str, float] | None = None


def tflite_available() -> bool:
    """Whether litert-torch (the optional TFLite converter) is importable here."""
    import importlib.util

    return importlib.util.find_spec("litert_torch") is not None


@dataclass(frozen=True)
class TfliteExport:
    path: Path  # the .tflite
    parity: dict[str, float]  # against PyTorch on real photos, also written to the sidecar
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "seconds": round(self.seconds, 2), "parity": self.parity}


def require_tflite_export(spec: EncoderSpec) -> None:
    """EncoderError naming why `spec` cannot be exported to TFLite here, before any work."""
    if not tflite_available():
        raise EncoderError(
            "TFLite export needs litert-torch, which is not installed here: it pulls ~2.1 GB "
            "(jax, transformers) and lives in its own environment: run `make setup-litert`, "
            "then `.venv-litert/bin/plada-build export-encoder ... --tflite`. "
            "The ONNX export works without it."
        )
    if spec.int8:
        raise EncoderError(f"{spec.id}: int8 TFLite export is not implemented; export fp32")


def _tflite_sidecar(spec: EncoderSpec, out_dir: Path) -> EncoderInfo:
    """The ONNX export's `<id>.json`: the .tflite shares it (the agent reads size, feature_dim
    and preprocess from it, and checks `tflite_sha256`)."""
    onnx_path = out_dir / f"{spec.id}.onnx"
    try:
        info = read_encoder_info(onnx_path)
    except EncoderSpecError as exc:
        raise EncoderError(
            f"{spec.id}: the TFLite export shares the ONNX export's sidecar, which is not "
            f"usable ({exc}); run `plada-build export-encoder --model {spec.model} "
            f"--size {spec.size} --out {out_dir}` first, or pass --tflite"
        ) from exc
    if (info.id, info.size, info.int8) != (spec.id, spec.size, spec.int8):
        raise EncoderError(f"{encoder_info_path(onnx_path)} describes {info.id}, not {spec.id}")
    return info


def _run_tflite(path: Path, spec: EncoderSpec, batch: np.ndarray) -> np.ndarray:
    """Features from LiteRT (ai-edge-litert, which litert-torch installs) fed the way the
    agent's TFLite backend feeds it: NCHW, the input resized to each batch. Batches of 24 (24,
    24, 16 for 64 images) so the check covers resizing a file traced at batch 1, twice. (The
    builder does not import the agent package; tests compare with agent.features directly.)"""
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_path=str(path), num_threads=2)
        index = int(interpreter.get_input_details()[0]["index"])
        output = int(interpreter.get_output_details()[0]["index"])
        out = []
        for lo in range(0, len(batch), 24):
            chunk = np.ascontiguousarray(batch[lo : lo + 24])
            interpreter.resize_tensor_input(index, list(chunk.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(index, chunk)
            interpreter.invoke()
            out.append(np.array(interpreter.get_tensor(output), dtype=np.float32))
    except (RuntimeError, ValueError) as exc:  # what the interpreter raises
        raise EncoderError(
            f"{spec.id}: the converted .tflite does not run on batches of 24 and 16 "
            f"(a batch baked into the graph?): {exc}"
        ) from exc
    return np.concatenate(out)


def convert_tflite(module: Any, example: np.ndarray, dest: Path) -> None:
    """Write `module` ((B, 3, S, S) -> (B, D), torch) as a .tflite traced at example's shape."""
    import litert_torch
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        # torch.export's pytree emits a FutureWarning about LeafSpec (torch 2.13); not ours.
        # litert-torch prints its progress to stdout: keep stdout for the CLI's --json.
        warnings.simplefilter("ignore", FutureWarning)
        converted = litert_torch.convert(module.eval(), (torch.from_numpy(example.copy()),))
        converted.export(str(dest))


def export_tflite(
    spec: EncoderSpec, out_dir: Path, *, parity_images: Sequence[Image.Image] | None = None
) -> TfliteExport:
    """Write `<out_dir>/<id>.tflite` (fp32) after a parity check; EncoderError if it fails.

    Needs litert-torch (the optional .venv-litert, stack.md) and the ONNX export's `<id>.json`
    in out_dir, to which it adds `tflite_sha256` and `tflite_parity`. The file takes the same
    NCHW input as the ONNX export (litert-torch puts the NHWC transposes inside the graph; an
    NHWC-input variant ran no faster on XNNPACK). Its batch is fixed at 1 because litert-torch
    cannot lower a dynamic batch through the Lite models' static padding; the interpreter resizes
    it, which the parity check exercises.
    """
    require_tflite_export(spec)
    from builder.encoders.torch_encoder import TorchEncoder

    started = time.perf_counter()
    sidecar = _tflite_sidecar(spec, out_dir)
    reference = TorchEncoder(spec, channels_last=False)
    parity = preprocess_batch(
        list(parity_images) if parity_images is not None else real_images(64, seed=2),
        size=spec.size,
    )  # (P, 3, S, S)
    expected = reference.embed(parity)  # (P, D)
    dest = out_dir / f"{spec.id}.tflite"
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{spec.id}.tflite.") as tmp_name:
        tmp = Path(tmp_name) / "model.tflite"
        convert_tflite(reference.module, parity[:1], tmp)
        actual = _run_tflite(tmp, spec, parity)
        cos = cosine_rows(actual, expected)
        stats = {
            "tflite_max_abs_diff": float(np.abs(actual - expected).max()),
            "tflite_cosine_mean": float(cos.mean()),
            "tflite_cosine_min": float(cos.min()),
        }
        if stats["tflite_max_abs_diff"] > TFLITE_MAX_ABS_DIFF:
            raise EncoderError(
                f"{spec.id}: TFLite fp32 differs from PyTorch by "
                f"{stats['tflite_max_abs_diff']:.2e} (> {TFLITE_MAX_ABS_DIFF:.0e}) on "
                f"{len(parity)} real images"
            )
        os.replace(tmp, dest)
    update = {"tflite_sha256": sha256_file(dest), "tflite_parity": stats}
    write_encoder_info(dest.with_suffix(".onnx"), sidecar.model_copy(update=update))
    return TfliteExport(path=dest, parity=stats, seconds=time.perf_counter() - started)
