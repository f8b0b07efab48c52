"""Small real encoders for agent tests, in the layout `plada-build export-encoder` writes.

The model: flatten the (B, 3, S, S) input, a seeded linear layer to D features, ReLU. The same
weights are written as ONNX (onnx helper API) and, where ai-edge-litert is installed, as TFLite
(flatbuffer object API from LiteRT's own schema module), so backend tests compare like with like.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np


def tiny_encoder_weights(
    *, size: int, feature_dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(weight (3*S*S, D), bias (D,)) float32."""
    rng = np.random.default_rng(seed)
    fan_in = 3 * size * size
    weight = rng.normal(0, 1 / np.sqrt(fan_in), size=(fan_in, feature_dim)).astype(np.float32)
    bias = rng.normal(0, 0.1, size=feature_dim).astype(np.float32)
    return weight, bias


def _write_sidecar(path: Path, *, encoder_id: str, size: int, feature_dim: int) -> None:
    meta = {
        "id": encoder_id,
        "model": "tiny",
        "size": size,
        "int8": False,
        "feature_dim": feature_dim,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "preprocess": "tf-127-128",
    }
    path.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")


def make_tiny_onnx_encoder(
    out_dir: Path, *, size: int = 32, feature_dim: int = 16, seed: int = 0
) -> Path:
    """Write `<id>.onnx` + `<id>.json` under out_dir; returns the .onnx path."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = tiny_encoder_weights(size=size, feature_dim=feature_dim, seed=seed)
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w", "b"], ["pre"]),
        helper.make_node("Relu", ["pre"], ["features"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_encoder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", feature_dim])],
        initializer=[numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    encoder_id = f"tiny{seed}-{size}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{encoder_id}.onnx"
    path.write_bytes(model.SerializeToString())
    _write_sidecar(path, encoder_id=encoder_id, size=size, feature_dim=feature_dim)
    return path


def make_tiny_tflite_encoder(
    out_dir: Path, *, size: int = 32, feature_dim: int = 16, seed: int = 0
) -> Path:
    """The same model as make_tiny_onnx_encoder as `<id>.tflite`; adds `tflite_sha256` to the
    `<id>.json` sidecar (shared with the .onnx, as an export of both formats would)."""
    import flatbuffers  # type: ignore[import-untyped]
    from ai_edge_litert import schema_py_generated as s

    weight, bias = tiny_encoder_weights(size=size, feature_dim=feature_dim, seed=seed)
    fan_in = 3 * size * size

    def buffer(data: np.ndarray | None) -> Any:
        b = s.BufferT()
        b.data = None if data is None else np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        return b

    def tensor(name: str, shape: list[int], buf: int, kind: int = s.TensorType.FLOAT32) -> Any:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, shape, kind, buf
        if shape and name in ("input", "flat", "features"):
            t.shapeSignature = [-1, *shape[1:]]
        return t

    buffers = [
        buffer(None),  # 0: the empty sentinel buffer
        buffer(weight.T.copy()),  # 1: FULLY_CONNECTED wants (out, in)
        buffer(bias),  # 2
        buffer(np.array([-1, fan_in], dtype=np.int32)),  # 3: reshape target
    ]
    tensors = [
        tensor("input", [1, 3, size, size], 0),
        tensor("shape", [2], 3, s.TensorType.INT32),
        tensor("flat", [1, fan_in], 0),
        tensor("w", [feature_dim, fan_in], 1),
        tensor("b", [feature_dim], 2),
        tensor("features", [1, feature_dim], 0),
    ]
    codes = []
    for op in (s.BuiltinOperator.RESHAPE, s.BuiltinOperator.FULLY_CONNECTED):
        code = s.OperatorCodeT()
        code.builtinCode = op
        code.deprecatedBuiltinCode = op
        code.version = 1
        codes.append(code)
    reshape = s.OperatorT()
    reshape.opcodeIndex, reshape.inputs, reshape.outputs = 0, [0, 1], [2]
    reshape.builtinOptionsType = s.BuiltinOptions.ReshapeOptions
    reshape.builtinOptions = s.ReshapeOptionsT()
    reshape.builtinOptions.newShape = [-1, fan_in]
    dense = s.OperatorT()
    dense.opcodeIndex, dense.inputs, dense.outputs = 1, [2, 3, 4], [5]
    dense.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    dense.builtinOptions = s.FullyConnectedOptionsT()
    dense.builtinOptions.fusedActivationFunction = s.ActivationFunctionType.RELU
    subgraph = s.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs = tensors, [0], [5]
    subgraph.operators, subgraph.name = [reshape, dense], "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [subgraph]
    model.buffers, model.description = buffers, "plada tiny test encoder"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    encoder_id = f"tiny{seed}-{size}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{encoder_id}.tflite"
    path.write_bytes(bytes(builder.Output()))
    sidecar = path.with_suffix(".json")  # shared with the .onnx export when both exist
    if not sidecar.exists():
        _write_sidecar(path, encoder_id=encoder_id, size=size, feature_dim=feature_dim)
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    meta["tflite_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    sidecar.write_text(json.dumps(meta), encoding="utf-8")
    return path
