"""A trained head as an ONNX model: input `features` (B, D) -> output `probabilities` (B, C).

softmax(((f - mean) * scale) W + b): the standardisation is baked in, so a stored head runs on
the raw encoder features. Serialised by agent.onnx_proto (no `onnx` import on the device).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from agent import onnx_proto as pb
from plada.head import HeadWeights


def export_head_onnx(weights: HeadWeights, *, metadata: Mapping[str, str] | None = None) -> bytes:
    """The head as an ONNX model: input `features` (B, D) -> output `probabilities` (B, C)."""
    d, c = weights.feature_dim, weights.num_classes
    nodes = [
        pb.Node("Sub", ["features", "mean"], ["centred"]),
        pb.Node("Mul", ["centred", "scale"], ["standardised"]),
        pb.Node("MatMul", ["standardised", "weight"], ["xw"]),
        pb.Node("Add", ["xw", "bias"], ["logits"]),
        pb.Node("Softmax", ["logits"], ["probabilities"], {"axis": 1}),
    ]
    return pb.model(
        nodes=nodes,
        name="plada_head",
        inputs=[pb.value_info("features", ["batch", d])],
        outputs=[pb.value_info("probabilities", ["batch", c])],
        initializers=[
            pb.tensor("mean", weights.mean.astype(np.float32)),
            pb.tensor("scale", weights.scale.astype(np.float32)),
            pb.tensor("weight", weights.weight.astype(np.float32)),
            pb.tensor("bias", weights.bias.astype(np.float32)),
        ],
        opset=17,
        ir_version=8,
        producer="plada-agent",
        metadata=metadata,
    )
