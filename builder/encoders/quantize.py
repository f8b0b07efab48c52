"""int8 quantisation of an fp32 ONNX export, searching how many leading blocks stay float.

int8 = `onnxruntime.quantization.quantize_static`, QDQ, per-channel int8 weights, uint8 activations,
MinMax calibration over real images. Measured on Lite0 at 64 px (README "Encoders"): dynamic
quantisation reached cosine 0.81 (and ran slower than fp32), per-tensor static 0.79, per-channel
static 0.985: the stem and first blocks are the sensitive part (block 0's depthwise weights alone
cost 0.009 of cosine). So the quantiser keeps the first `float_blocks` units in float (unit 0 is
the stem, unit k >= 1 is block k - 1), trying 0, 1, 2, ... until the mean cosine on held-out images
clears INT8_TARGET_COSINE, and records the choice and every try in the sidecar.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from builder.encoders.parity import cosine_rows, ort_session, run_onnx
from builder.errors import EncoderError

logger = logging.getLogger(__name__)

INT8_MIN_COSINE = 0.99  # the acceptance bar (mean over held-out real images)

INT8_TARGET_COSINE = 0.995  # what the float-block search aims for, to leave a margin

MAX_FLOAT_BLOCKS = 4


def _float_block_nodes(model_path: Path, float_blocks: int) -> list[str]:
    """Conv nodes of the first `float_blocks` units (stem, block 0, block 1, ...) by weight."""
    import onnx

    if float_blocks <= 0:
        return []
    prefixes = ("_conv_stem.", *(f"_blocks.{i}." for i in range(float_blocks - 1)))
    model = onnx.load(str(model_path))
    return [
        node.name
        for node in model.graph.node
        if node.op_type == "Conv"
        and len(node.input) > 1
        and any(p in node.input[1] for p in prefixes)
    ]


class _CalibrationReader:
    """onnxruntime.quantization.CalibrationDataReader over a preprocessed batch."""

    def __init__(self, batch: np.ndarray, *, chunk: int = 32) -> None:
        self._chunks: Iterator[dict[str, np.ndarray]] = iter(
            [{"input": batch[i : i + chunk]} for i in range(0, len(batch), chunk)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._chunks, None)


def _quantize(
    fp32_path: Path,
    out_path: Path,
    calibration: np.ndarray,
    float_blocks: int,
    *,
    ranges_file: Path | None = None,
) -> None:
    """`ranges_file`: where the first call stores the calibrated activation ranges and later
    ones read them (onnxruntime >= 1.32's calibration cache). Calibration does not depend on the
    float blocks (they only exclude nodes from quantisation), so every rung of the ladder gets
    the ranges the first one measured: measured, calibration was 58 % of the search."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(_CalibrationReader, CalibrationDataReader):  # type: ignore[misc]
        pass

    prepared = out_path.with_name(out_path.stem + ".prep.onnx")
    quant_pre_process(str(fp32_path), str(prepared))
    quantize_static(
        str(prepared),
        str(out_path),
        Reader(calibration),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # 7-bit weights. On x86 without AVX512-VNNI, ORT's u8s8 kernels (VPMADDUBSW) saturate the
        # int16 sum of two u8*s8 products: the same 8-bit file gave cosine 0.9955 on a VNNI
        # machine and 0.9875 (a failed export) on an AVX2-only one. 7-bit weights cannot
        # saturate, so every CPU computes the same features, which the builder's simulation of
        # a device relies on. u8 weights (U8U8) also avoid it but ran 5x slower on AVX2.
        reduce_range=True,
        calibrate_method=CalibrationMethod.MinMax,
        nodes_to_exclude=_float_block_nodes(prepared, float_blocks),
        **_calibration_cache(quantize_static, ranges_file),
    )
    prepared.unlink(missing_ok=True)


def _calibration_cache(quantize_static: Any, ranges_file: Path | None) -> dict[str, str]:
    """quantize_static's keyword for a calibration cache, where this onnxruntime has one."""
    if ranges_file is None:
        return {}
    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return {}  # older onnxruntime: every rung calibrates again (same ranges, more time)
    return {"calibration_cache_path": str(ranges_file)}


def search_int8(
    fp32_path: Path,
    calibration: np.ndarray,
    parity: np.ndarray,
    expected: np.ndarray,
    *,
    float_blocks: int | None,
) -> tuple[Path, dict[str, Any], dict[str, float]]:
    """Quantise with 0, 1, 2, ... leading float blocks until the cosine clears the target."""
    ladder = [float_blocks] if float_blocks is not None else list(range(MAX_FLOAT_BLOCKS + 1))
    tried: list[dict[str, float]] = []
    best: tuple[float, Path, int, dict[str, float]] | None = None
    ranges = fp32_path.with_name("int8-ranges.json")  # beside the fp32 file: a work folder
    ranges.unlink(missing_ok=True)
    for k in ladder:
        path = fp32_path.with_name(f"int8-f{k}.onnx")
        _quantize(fp32_path, path, calibration, k, ranges_file=ranges)
        cos = cosine_rows(run_onnx(ort_session(path), parity), expected)
        stats = {
            "int8_cosine_mean": float(cos.mean()),
            "int8_cosine_min": float(cos.min()),
            "int8_cosine_p05": float(np.quantile(cos, 0.05)),
        }
        tried.append({"float_blocks": k, **stats})
        logger.info("int8 with %d float blocks: cosine mean %.4f", k, stats["int8_cosine_mean"])
        if best is None or stats["int8_cosine_mean"] > best[0]:
            best = (stats["int8_cosine_mean"], path, k, stats)
        if stats["int8_cosine_mean"] >= INT8_TARGET_COSINE:
            break
    if best is None:
        raise EncoderError("int8 export: nothing was tried (empty float-block ladder)")
    mean, path, k, stats = best
    if mean < INT8_MIN_COSINE:
        raise EncoderError(
            f"int8 export fails its parity check: best mean cosine {mean:.4f} "
            f"(< {INT8_MIN_COSINE}) against PyTorch on {len(parity)} real images; tried {tried}"
        )
    quantization = {
        "method": (
            "quantize_static QDQ per-channel s8 weights (7-bit, reduce_range), "
            "u8 activations, MinMax"
        ),
        "calibration_images": len(calibration),
        "float_blocks": k,
        "tried": tried,
    }
    return path, quantization, stats
