"""Export a device encoder: ONNX fp32 or int8 (+ TFLite fp32 where litert-torch is installed).

`export_encoder(spec, out_dir)` writes `<id>.onnx` (input `input` (B, 3, S, S) float32 NCHW from
plada.preprocess, output `features` (B, D) float32, dynamic batch) and `<id>.json` (EncoderInfo),
after a parity check against PyTorch on real photos (scikit-image's bundled pictures, cropped
deterministically): fp32 max abs diff <= 1e-4, int8 mean cosine >= 0.99. A failed check raises
EncoderError and writes nothing.

int8 = `onnxruntime.quantization.quantize_static`, QDQ, per-channel int8 weights, uint8 activations,
MinMax calibration over real images. Measured on Lite0 at 64 px (README "Encoders"): dynamic
quantisation reached cosine 0.81 (and ran slower than fp32), per-tensor static 0.79, per-channel
static 0.985: the stem and first blocks are the sensitive part (block 0's depthwise weights alone
cost 0.009 of cosine). So the quantiser keeps the first `float_blocks` units in float (unit 0 is
the stem, unit k >= 1 is block k - 1), trying 0, 1, 2, ... until the mean cosine on held-out images
clears INT8_TARGET_COSINE, and records the choice and every try in the sidecar.

TFLite = `litert_torch.convert` in the optional .venv-litert (`make setup-litert`): `export_tflite`
writes `<id>.tflite` beside the ONNX export and adds `tflite_sha256` + `tflite_parity` to its
sidecar, after running the file on LiteRT as the agent does and checking it against PyTorch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from builder.errors import EncoderError
from plada.atomic import write_text_atomic
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

logger = logging.getLogger(__name__)

FP32_MAX_ABS_DIFF = 1e-4
INT8_MIN_COSINE = 0.99  # the acceptance bar (mean over held-out real images)
INT8_TARGET_COSINE = 0.995  # what the float-block search aims for, to leave a margin
MAX_FLOAT_BLOCKS = 4
# TFLite (XNNPACK) sums in another order than PyTorch: Lite0-64 measured ~1e-4 max abs diff on
# features of magnitude ~1-10 (cosine 1 - 1e-9); a bar 10x above that still catches a wrong
# layout or preprocessing, which cost far more.
TFLITE_MAX_ABS_DIFF = 1e-3
ONNX_OPSET = 18

# Bundled scikit-image pictures that load offline (others need a download).
_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "moon",
    "clock",
    "brick",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "page",
    "text",
    "colorwheel",
    "cell",
)


def real_images(num_images: int, *, seed: int) -> list[Image.Image]:
    """Deterministic square crops (1/4 to full side) of scikit-image's bundled photographs."""
    try:
        import skimage.data
    except ImportError as exc:
        raise EncoderError(f"real images for parity checks need scikit-image: {exc}") from exc
    photos = [np.asarray(getattr(skimage.data, name)()) for name in _PHOTOS]
    rng = np.random.default_rng(seed)
    out: list[Image.Image] = []
    for i in range(num_images):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        out.append(Image.fromarray(photo[y : y + side, x : x + side]))
    return out


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the .onnx
    info: EncoderInfo
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "seconds": round(self.seconds, 2), **self.info.to_json()}


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, D), (N, D) -> (N,) cosine similarity of matching rows (0 where a row is all zero)."""
    num = (a.astype(np.float64) * b).sum(1)
    den = np.linalg.norm(a.astype(np.float64), axis=1) * np.linalg.norm(
        b.astype(np.float64), axis=1
    )
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)


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


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _run(session: Any, batch: np.ndarray) -> np.ndarray:
    out = np.concatenate(
        [
            session.run(["features"], {"input": batch[i : i + 64]})[0]
            for i in range(0, len(batch), 64)
        ]
    )
    return np.asarray(out, dtype=np.float32)


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


def _quantize(fp32_path: Path, out_path: Path, calibration: np.ndarray, float_blocks: int) -> None:
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
    )
    prepared.unlink(missing_ok=True)


def export_encoder(
    spec: EncoderSpec,
    out_dir: Path,
    *,
    calibration_images: Sequence[Image.Image] | None = None,
    parity_images: Sequence[Image.Image] | None = None,
    float_blocks: int | None = None,
) -> ExportResult:
    """Write `<out_dir>/<id>.onnx` + `.json` after the parity check; EncoderError if it fails.

    calibration_images: int8 calibration (default: 128 real photo crops; pass images of the
    device's own corpus for a better fit). parity_images: held-out images of the check (default:
    64 other photo crops). float_blocks: force how many leading blocks stay float (int8 only).
    """
    if spec.model == "opennsfw":
        from builder.encoders.opennsfw import export_opennsfw

        return export_opennsfw(spec, out_dir)
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
        tmp = Path(tmp_name)
        fp32_path = tmp / "fp32.onnx"
        exporter = _torch_onnx_export(reference.module, _example(parity), fp32_path)
        _strip_metadata(fp32_path)
        actual = _run(_ort_session(fp32_path), parity)
        max_abs = float(np.abs(actual - expected).max())
        parity_info: dict[str, float] = {"fp32_max_abs_diff": max_abs}
        if max_abs > FP32_MAX_ABS_DIFF:
            raise EncoderError(
                f"{spec.id}: ONNX fp32 differs from PyTorch by {max_abs:.2e} "
                f"(> {FP32_MAX_ABS_DIFF:.0e}) on {len(parity)} real images"
            )
        quantization: dict[str, Any] | None = None
        final = fp32_path
        if spec.int8:
            calibration = preprocess_batch(
                list(calibration_images)
                if calibration_images is not None
                else real_images(128, seed=1),
                size=spec.size,
            )
            final, quantization, cos = _search_int8(
                fp32_path, calibration, parity, expected, float_blocks=float_blocks
            )
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
    kept = _tflite_record(dest)
    write_encoder_info(dest, info)
    if kept:  # the .tflite beside it was converted from the same weights and is still checked
        sidecar = encoder_info_path(dest)
        meta = json.loads(sidecar.read_text(encoding="utf-8")) | kept
        write_text_atomic(sidecar, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return ExportResult(path=dest, info=info, seconds=time.perf_counter() - started)


def _tflite_record(onnx_path: Path) -> dict[str, Any]:
    """The `tflite_*` keys of the current sidecar when the `.tflite` beside it still has the
    recorded sha256 (so re-exporting the ONNX keeps it verifiable), else {} (the agent then
    refuses that .tflite until it is exported again)."""
    tflite = onnx_path.with_suffix(".tflite")
    sidecar = encoder_info_path(onnx_path)
    if not (tflite.exists() and sidecar.exists()):
        return {}
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(meta, dict) or meta.get("tflite_sha256") != sha256_file(tflite):
        return {}
    return {k: v for k, v in meta.items() if k.startswith("tflite_")}


def _example(parity: np.ndarray) -> Any:
    import torch

    return torch.from_numpy(parity[:2].copy())


def _search_int8(
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
    for k in ladder:
        path = fp32_path.with_name(f"int8-f{k}.onnx")
        _quantize(fp32_path, path, calibration, k)
        cos = cosine_rows(_run(_ort_session(path), parity), expected)
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


def _tflite_sidecar(spec: EncoderSpec, out_dir: Path) -> dict[str, Any]:
    """The ONNX export's `<id>.json` as a dict: the .tflite shares it (the agent reads size,
    feature_dim and preprocess from it, and checks `tflite_sha256`)."""
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
    meta: dict[str, Any] = json.loads(encoder_info_path(onnx_path).read_text(encoding="utf-8"))
    return meta


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
    sidecar["tflite_sha256"] = sha256_file(dest)
    sidecar["tflite_parity"] = stats
    write_text_atomic(encoder_info_path(dest), json.dumps(sidecar, indent=2, sort_keys=True) + "\n")
    return TfliteExport(path=dest, parity=stats, seconds=time.perf_counter() - started)


def copy_export(src: Path, out_dir: Path) -> Path:
    """Copy an exported `<id>.onnx` + `.json` pair into out_dir (e.g. a firmware bundle)."""
    read_encoder_info(src)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in (src, encoder_info_path(src)):
        tmp = out_dir / f".{path.name}.tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, out_dir / path.name)
    return out_dir / src.name
