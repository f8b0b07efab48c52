"""Export a device encoder to ONNX, fp32 or int8, after a parity check against PyTorch.

`export_encoder(spec, out_dir)` writes `<id>.onnx` (input `input` (B, 3, S, S) float32 NCHW from
plada.preprocess, output `features` (B, D) float32, dynamic batch) and `<id>.json` (EncoderInfo),
after a parity check against PyTorch on real photos (builder/encoders/parity.py): fp32 max abs diff
<= 1e-4, int8 mean cosine >= 0.99 (builder/encoders/quantize.py). A failed check raises
EncoderError and writes nothing. The TFLite export (builder/encoders/tflite.py) shares the sidecar.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from builder.encoders.opennsfw import export_opennsfw
from builder.encoders.parity import ort_session, real_images, run_onnx
from builder.encoders.quantize import search_int8
from builder.encoders.tflite import kept_tflite_record
from builder.errors import EncoderError
from plada.encoders import (
    DEFAULT_CALIBRATION,
    EncoderInfo,
    EncoderSpec,
    encoder_info_path,
    read_encoder_info,
    sha256_file,
    write_encoder_info,
)
from plada.errors import EncoderSpecError
from plada.preprocess import preprocess_batch

logger = logging.getLogger(__name__)

FP32_MAX_ABS_DIFF = 1e-4
ONNX_OPSET = 18


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the .onnx
    info: EncoderInfo
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "seconds": round(self.seconds, 2), **self.info.to_json()}


def _torch_onnx_export(module: Any, example: Any, path: Path) -> str:
    """torch.onnx.export with the dynamo exporter (stack.md); the legacy one only if it fails."""
    import torch

    batch = torch.export.Dim("batch", min=1, max=65536)
    try:
        with warnings.catch_warnings():
            # torch.export's pytree emits a FutureWarning about LeafSpec (torch 2.13); not ours.
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=True,
                external_data=False,
                input_names=["input"],
                output_names=["features"],
                dynamic_shapes={"x": {0: batch}},
                opset_version=ONNX_OPSET,
                verbose=False,
            )
        return "dynamo"
    except Exception as exc:  # the exporter raises many types; fall back and say why
        logger.warning("dynamo ONNX export failed (%s); using the legacy exporter", exc)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                input_names=["input"],
                output_names=["features"],
                dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"}},
                opset_version=ONNX_OPSET,
            )
        return "legacy"


def _strip_metadata(path: Path) -> None:
    """Drop per-node metadata (source stack traces, FX node dumps) and doc strings that the
    dynamo exporter writes: they change with every edit of the Python source, so without this
    two exports of the same weights get different sha256 (and different cache keys)."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for info in (*model.graph.input, *model.graph.output, *model.graph.value_info):
        del info.metadata_props[:]
        info.doc_string = ""
    model.graph.doc_string = ""
    del model.graph.metadata_props[:]
    onnx.save(model, str(path))


def export_encoder(
    spec: EncoderSpec,
    out_dir: Path,
    *,
    calibration_images: Sequence[Image.Image] | None = None,
    parity_images: Sequence[Image.Image] | None = None,
    float_blocks: int | None = None,
    calibration: str = DEFAULT_CALIBRATION,
) -> ExportResult:
    """Write `<out_dir>/<id>.onnx` + `.json` after the parity check; EncoderError if it fails.

    calibration_images: int8 calibration (default: 128 real photo crops; pass images of the
    device's own corpus for a better fit); `calibration` names them (`corpus-<fingerprint[:8]>`)
    in the sidecar and so in the embedding cache key (issue 18). parity_images: held-out images
    of the check (default: 64 other photo crops). float_blocks: force how many leading blocks
    stay float (int8 only).
    """
    if spec.model == "opennsfw":
        started = time.perf_counter()
        path, info = export_opennsfw(spec, out_dir)
        return ExportResult(path=path, info=info, seconds=time.perf_counter() - started)
    from builder.encoders.torch_encoder import TorchEncoder

    started = time.perf_counter()
    reference = TorchEncoder(spec.float_spec, channels_last=False)
    parity = preprocess_batch(
        list(parity_images) if parity_images is not None else real_images(64, seed=2),
        size=spec.size,
    )  # (P, 3, S, S)
    expected = reference.embed(parity)  # (P, D)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{spec.id}.") as tmp_name:
        fp32_path = Path(tmp_name) / "fp32.onnx"
        exporter, parity_info = _export_fp32(reference.module, parity, expected, fp32_path, spec)
        quantization: dict[str, Any] | None = None
        final = fp32_path
        if spec.int8:
            calibration_batch = preprocess_batch(
                list(calibration_images)
                if calibration_images is not None
                else real_images(128, seed=1),
                size=spec.size,
            )
            final, quantization, cos = search_int8(
                fp32_path, calibration_batch, parity, expected, float_blocks=float_blocks
            )
            quantization["calibration"] = calibration
            parity_info |= cos
        dest = out_dir / f"{spec.id}.onnx"
        os.replace(final, dest)
    info = EncoderInfo(
        id=spec.id,
        model=spec.model,
        size=spec.size,
        int8=spec.int8,
        feature_dim=reference.feature_dim,
        sha256=sha256_file(dest),
        parity=parity_info,
        quantization=quantization,
        exporter=exporter,
    )
    # A .tflite beside it converted from the same weights, and still the file checked, stays.
    kept = kept_tflite_record(dest)
    write_encoder_info(dest, info.model_copy(update=kept) if kept else info)
    return ExportResult(path=dest, info=info, seconds=time.perf_counter() - started)


def _export_fp32(
    module: Any, parity: np.ndarray, expected: np.ndarray, path: Path, spec: EncoderSpec
) -> tuple[str, dict[str, float]]:
    """(exporter used, parity) of the fp32 ONNX written to `path`; EncoderError if it differs."""
    exporter = _torch_onnx_export(module, _example(parity), path)
    _strip_metadata(path)
    actual = run_onnx(ort_session(path), parity)  # (P, D)
    max_abs = float(np.abs(actual - expected).max())
    if max_abs > FP32_MAX_ABS_DIFF:
        raise EncoderError(
            f"{spec.id}: ONNX fp32 differs from PyTorch by {max_abs:.2e} "
            f"(> {FP32_MAX_ABS_DIFF:.0e}) on {len(parity)} real images"
        )
    return exporter, {"fp32_max_abs_diff": max_abs}


def _example(parity: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(parity[:2].copy())


def ensure_exported(spec: EncoderSpec, *, out_dir: Path) -> Path:
    """`<out_dir>/<id>.onnx` if a valid export (sidecar + matching hash) is there, else export."""
    path = out_dir / f"{spec.id}.onnx"
    if path.is_file() and encoder_info_path(path).is_file():
        try:
            read_encoder_info(path)
            return path
        except EncoderSpecError as exc:
            logger.warning("re-exporting %s: %s", path, exc)
    return export_encoder(spec, out_dir).path
