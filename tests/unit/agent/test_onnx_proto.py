"""agent.onnx_proto: the agent's ONNX graphs serialised without the onnx package, byte for byte
as onnx.helper writes them, and loadable by onnxruntime."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from agent import onnx_proto as pb


def test_a_model_is_serialised_exactly_as_onnx_helper_does() -> None:
    # Prepare: every feature the agent's graphs use
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    weight = np.arange(6, dtype=np.float32).reshape(3, 2) - 2.5
    reference = helper.make_model(
        helper.make_graph(
            [
                helper.make_node("MatMul", ["x", "w"], ["y"]),
                helper.make_node("ReduceSum", ["y", "axes"], ["s"], keepdims=0),
                helper.make_node("Shape", ["x"], ["shape"], start=0, end=1),
            ],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
            [
                helper.make_tensor_value_info("s", TensorProto.FLOAT, []),
                helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2]),
            ],
            initializer=[
                numpy_helper.from_array(weight, "w"),
                numpy_helper.from_array(np.array([-1], np.int64), "axes"),
                numpy_helper.from_array(np.array(0.25, np.float32), "half"),
            ],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
        producer_name="plada-agent",
    )
    reference.ir_version = 8
    reference.metadata_props.add(key="task", value="fashion é")
    # Execute
    ours = pb.model(
        nodes=[
            pb.Node("MatMul", ["x", "w"], ["y"]),
            pb.Node("ReduceSum", ["y", "axes"], ["s"], {"keepdims": 0}),
            pb.Node("Shape", ["x"], ["shape"], {"start": 0, "end": 1}),
        ],
        name="g",
        inputs=[pb.value_info("x", ["batch", 3])],
        outputs=[pb.value_info("s", []), pb.value_info("y", ["batch", 2])],
        initializers=[
            pb.tensor("w", weight),
            pb.tensor("axes", np.array([-1], np.int64)),
            pb.float32_scalar("half", 0.25),
        ],
        opset=17,
        ir_version=8,
        producer="plada-agent",
        metadata={"task": "fashion é"},
    )
    # Assert
    assert ours == reference.SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(ours))


def test_other_initialiser_dtypes_are_refused() -> None:
    with pytest.raises(ValueError, match="float64"):
        pb.tensor("w", np.zeros(2, dtype=np.float64))


def test_training_and_exporting_a_head_never_import_onnx() -> None:
    # Prepare: a fresh interpreter, so nothing imported onnx before
    code = (
        "import sys, numpy as np\n"
        "from agent.trainers import OrtGraphTrainer\n"
        "from agent.head_onnx import export_head_onnx\n"
        "from plada.head import HeadHyperParams\n"
        "rng = np.random.default_rng(0)\n"
        "x = rng.normal(size=(40, 8)).astype(np.float32)\n"
        "y = np.arange(40) % 3\n"
        "hp = HeadHyperParams(epochs=1, min_steps=2, max_steps=2, batch_size=16)\n"
        "result = OrtGraphTrainer().train(x, y, num_classes=3, hp=hp)\n"
        "export_head_onnx(result.weights)\n"
        "print('onnx' in sys.modules)\n"
    )
    pytest.importorskip("onnxruntime")
    # Execute
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    # Assert
    assert done.stdout.strip() == "False"
