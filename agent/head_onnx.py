"""A trained head as an ONNX model: input `features` (B, D) -> output `probabilities` (B, C).

softmax(((f - mean) * scale) W + b): the standardisation is baked in, so a stored head runs on
the raw encoder features.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from plada.head import HeadWeights


def export_head_onnx(weights: HeadWeights, *, metadata: Mapping[str, str] | None = None) -> bytes:
    """The head as an ONNX model: input `features` (B, D) -> output `probabilities` (B, C)."""
    from onnx import TensorProto, helper, numpy_helper

    d, c = weights.feature_dim, weights.num_classes
    nodes = [
        helper.make_node("Sub", ["features", "mean"], ["centred"]),
        helper.make_node("Mul", ["centred", "scale"], ["standardised"]),
        helper.make_node("MatMul", ["standardised", "weight"], ["xw"]),
        helper.make_node("Add", ["xw", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "plada_head",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", d])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", c])],
        initializer=[
            numpy_helper.from_array(weights.mean.astype(np.float32), "mean"),
            numpy_helper.from_array(weights.scale.astype(np.float32), "scale"),
            numpy_helper.from_array(weights.weight.astype(np.float32), "weight"),
            numpy_helper.from_array(weights.bias.astype(np.float32), "bias"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="plada-agent"
    )
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    serialized: bytes = model.SerializeToString()
    return serialized
