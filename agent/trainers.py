"""Head-training backends behind one interface: NumPy, an ONNX train-step graph, ORT training API.

All three run the same algorithm from `plada.head`: the shared `plan_training` (standardisation,
label-smoothed targets, the seeded batch schedule, per-step learning rates, starting weights),
softmax cross-entropy and PyTorch-style AdamW. Only the step loop differs:

- ``numpy``:        `plada.head.train_head`, the reference (also the builder's simulation).
- ``ort-graph``:    one ordinary ONNX graph per step (forward, analytic softmax-CE gradient, AdamW),
                    run by plain `onnxruntime.InferenceSession`: works wherever onnxruntime does
                    (ARM included); the default on devices.
- ``ort-training``: the ONNX Runtime on-device training API (`onnxruntime-training`, x86_64 and
                    Python <= 3.11 only, its own virtual environment). Artifacts are generated here,
                    on the device, for the task's class count.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from agent import onnx_proto as pb
from agent.errors import TrainerError
from plada.head import (
    ADAM_BETA1,
    ADAM_BETA2,
    ADAM_EPS,
    HeadHyperParams,
    HeadTrainResult,
    TrainingPlan,
    adam_bias_corrections,
    finish_training,
    plan_training,
    train_head,
)

TrainerBackend = Literal["ort-graph", "ort-training", "numpy"]
BACKENDS: tuple[TrainerBackend, ...] = ("ort-graph", "ort-training", "numpy")

# Opset 17 / IR 8 load on every onnxruntime still shipped for devices (1.23 on JetPack 6 included)
# and on onnxruntime-training 1.19 (which rejects newer IR versions).
_OPSET = 17
_IR_VERSION = 8


class HeadTrainer(Protocol):
    """Trains a linear softmax head over frozen features; with `consume` the caller hands the
    features over and they may be overwritten (standardised in place)."""

    name: str

    def train(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int,
        hp: HeadHyperParams,
        consume: bool = False,
    ) -> HeadTrainResult: ...


class NumpyTrainer:
    """The reference backend: `plada.head.train_head`."""

    name = "numpy"

    def train(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int,
        hp: HeadHyperParams,
        consume: bool = False,
    ) -> HeadTrainResult:
        return train_head(features, labels, num_classes=num_classes, hp=hp, consume=consume)


def _loss_nodes() -> list[pb.Node]:
    """Forward and loss, shared by both graphs: mean over the batch of
    -sum(targets * log_softmax(features @ weight + bias)); needs the constant `axis1`."""
    n = pb.Node
    return [
        n("MatMul", ["features", "weight"], ["xw"]),
        n("Add", ["xw", "bias"], ["logits"]),
        n("LogSoftmax", ["logits"], ["logp"], {"axis": 1}),
        n("Mul", ["targets", "logp"], ["tlogp"]),
        n("ReduceSum", ["tlogp", "axis1"], ["row_ll"], {"keepdims": 0}),
        n("ReduceMean", ["row_ll"], ["mean_ll"], {"keepdims": 0}),
        n("Neg", ["mean_ll"], ["loss"]),
    ]


def build_train_step_graph(*, feature_dim: int, num_classes: int, weight_decay: float) -> bytes:
    """One AdamW step of a linear softmax head as an ONNX model (serialised by agent.onnx_proto:
    no `onnx` import on the device).

    Inputs: weight (D,C), bias (C,), m_weight, v_weight, m_bias, v_bias (Adam moments), features
    (B,D) standardised, targets (B,C), lr, bc1 = 1-b1^t, bc2 = 1-b2^t (float32 scalars).
    Outputs: new weight, bias and moments, and the batch loss before the update.
    The update follows ONNX Runtime's AdamWOptimizer kernel (PyTorch mode) operation by operation.
    """
    d, c = feature_dim, num_classes
    initializers = [
        pb.tensor("axis1", np.array([1], dtype=np.int64)),
        pb.tensor("axis0", np.array([0], dtype=np.int64)),
        pb.float32_scalar("b1", ADAM_BETA1),
        pb.float32_scalar("one_minus_b1", float(np.float32(1.0) - np.float32(ADAM_BETA1))),
        pb.float32_scalar("b2", ADAM_BETA2),
        pb.float32_scalar("one_minus_b2", float(np.float32(1.0) - np.float32(ADAM_BETA2))),
        pb.float32_scalar("eps", ADAM_EPS),
        pb.float32_scalar("wd", weight_decay),
    ]
    n = pb.Node
    nodes = [
        *_loss_nodes(),
        # analytic gradient: dL/dlogits = (softmax - targets) / B
        n("Exp", ["logp"], ["probs"]),
        n("Sub", ["probs", "targets"], ["diff"]),
        n("Shape", ["features"], ["xshape"], {"start": 0, "end": 1}),
        n("Cast", ["xshape"], ["batch_f"], {"to": pb.FLOAT}),
        n("Div", ["diff", "batch_f"], ["g_logits"]),
        n("Gemm", ["features", "g_logits"], ["g_weight"], {"transA": 1}),
        n("ReduceSum", ["g_logits", "axis0"], ["g_bias"], {"keepdims": 0}),
    ]
    for p in ("weight", "bias"):
        nodes += [
            # decoupled weight decay first: p = p - p * lr * wd
            n("Mul", [p, "lr"], [f"{p}_lr"]),
            n("Mul", [f"{p}_lr", "wd"], [f"{p}_decay"]),
            n("Sub", [p, f"{p}_decay"], [f"{p}_decayed"]),
            # m = b1 m + (1 - b1) g ; v = b2 v + (1 - b2) g g
            n("Mul", ["b1", f"m_{p}"], [f"{p}_m1"]),
            n("Mul", ["one_minus_b1", f"g_{p}"], [f"{p}_m2"]),
            n("Add", [f"{p}_m1", f"{p}_m2"], [f"new_m_{p}"]),
            n("Mul", ["b2", f"v_{p}"], [f"{p}_v1"]),
            n("Mul", ["one_minus_b2", f"g_{p}"], [f"{p}_v2a"]),
            n("Mul", [f"{p}_v2a", f"g_{p}"], [f"{p}_v2"]),
            n("Add", [f"{p}_v1", f"{p}_v2"], [f"new_v_{p}"]),
            # p = p - lr m / (bc1 (sqrt(v / bc2) + eps))
            n("Div", [f"new_v_{p}", "bc2"], [f"{p}_vhat"]),
            n("Sqrt", [f"{p}_vhat"], [f"{p}_sqrt"]),
            n("Add", [f"{p}_sqrt", "eps"], [f"{p}_denom"]),
            n("Mul", ["lr", f"new_m_{p}"], [f"{p}_num"]),
            n("Mul", ["bc1", f"{p}_denom"], [f"{p}_den"]),
            n("Div", [f"{p}_num", f"{p}_den"], [f"{p}_update"]),
            n("Sub", [f"{p}_decayed", f"{p}_update"], [f"new_{p}"]),
        ]
    shapes: dict[str, list[pb.Dim]] = {"weight": [d, c], "bias": [c]}
    inputs = [pb.value_info(p, shapes[p]) for p in ("weight", "bias")]
    inputs += [pb.value_info(f"{k}_{p}", shapes[p]) for p in ("weight", "bias") for k in ("m", "v")]
    inputs += [pb.value_info("features", ["batch", d]), pb.value_info("targets", ["batch", c])]
    inputs += [pb.value_info(s, []) for s in ("lr", "bc1", "bc2")]
    outputs = [pb.value_info(f"new_{p}", shapes[p]) for p in ("weight", "bias")]
    outputs += [
        pb.value_info(f"new_{k}_{p}", shapes[p]) for p in ("weight", "bias") for k in ("m", "v")
    ]
    outputs += [pb.value_info("loss", [])]
    return pb.model(
        nodes=nodes,
        name="head_train_step",
        inputs=inputs,
        outputs=outputs,
        initializers=initializers,
        opset=_OPSET,
        ir_version=_IR_VERSION,
        producer="plada-agent",
    )


class OrtGraphTrainer:
    """Runs `build_train_step_graph` once per step with plain onnxruntime."""

    name = "ort-graph"

    def __init__(self, *, threads: int = 1) -> None:
        self.threads = threads

    def train(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int,
        hp: HeadHyperParams,
        consume: bool = False,
    ) -> HeadTrainResult:
        plan = plan_training(features, labels, num_classes=num_classes, hp=hp, consume=consume)
        session = self._session(plan)
        from onnxruntime import OrtValue

        start: dict[str, np.ndarray] = {"weight": plan.weight0, "bias": plan.bias0}
        for p in ("weight", "bias"):
            start[f"m_{p}"] = np.zeros_like(start[p])
            start[f"v_{p}"] = np.zeros_like(start[p])
        names = list(start)
        output_names = [f"new_{k}" for k in names] + ["loss"]
        # The state stays in onnxruntime-owned OrtValues from step to step (no numpy round trip).
        state = {k: OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v)) for k, v in start.items()}
        step_losses = np.empty(len(plan.batches), dtype=np.float32)
        for step, rows in enumerate(plan.batches):
            bc1, bc2 = adam_bias_corrections(step + 1)
            batch = {  # numpy arrays kept alive here while their OrtValues are in use
                "features": plan.x[rows],
                "targets": plan.targets[rows],
                "lr": np.asarray(plan.rates[step], dtype=np.float32),
                "bc1": np.asarray(bc1, dtype=np.float32),
                "bc2": np.asarray(bc2, dtype=np.float32),
            }
            feeds = dict(state)
            feeds.update({k: OrtValue.ortvalue_from_numpy(v) for k, v in batch.items()})
            results = session.run_with_ort_values(output_names, feeds)
            state = dict(zip(names, results[:-1], strict=True))
            step_losses[step] = results[-1].numpy()
        return finish_training(
            plan,
            weight=state["weight"].numpy(),
            bias=state["bias"].numpy(),
            step_losses=step_losses,
            labels=labels,
        )

    def _session(self, plan: TrainingPlan) -> Any:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise TrainerError(f"backend 'ort-graph' needs onnxruntime: {exc}") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        graph = build_train_step_graph(
            feature_dim=plan.x.shape[1],
            num_classes=plan.num_classes,
            weight_decay=plan.hp.weight_decay,
        )
        return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _import_ort_training() -> tuple[Any, Any]:
    """(artifacts module, api module) of onnxruntime-training without importing torch.

    `import onnxruntime.training` imports torch; its `api` and `artifacts` submodules need not.
    A bare package object for `onnxruntime.training` in sys.modules lets them import alone.
    """
    spec = importlib.util.find_spec("onnxruntime")
    if spec is None or spec.origin is None:
        raise TrainerError(
            "backend 'ort-training' needs onnxruntime-training; onnxruntime is absent"
        )
    training_dir = Path(spec.origin).parent / "training"
    if not (training_dir / "api").is_dir():
        raise TrainerError(
            "backend 'ort-training' needs onnxruntime-training (only in .venv-ort-training, "
            "x86_64, Python <= 3.11); this environment has plain onnxruntime: use 'ort-graph'"
        )
    if "onnxruntime.training" not in sys.modules:
        package = types.ModuleType("onnxruntime.training")
        package.__path__ = [str(training_dir)]
        sys.modules["onnxruntime.training"] = package
    try:
        import onnxruntime as ort
        from onnxruntime.training import api, artifacts

        ort.set_default_logger_severity(3)
    except ImportError as exc:
        raise TrainerError(f"backend 'ort-training' cannot import its modules: {exc}") from exc
    return artifacts, api


def build_training_base_model(weight: np.ndarray, bias: np.ndarray) -> Any:
    """The forward graph with the loss built in (inputs features, targets; output loss).

    The loss is in the base model because the training API's built-in CrossEntropyLoss has no
    label smoothing; `generate_artifacts(loss=None)` then differentiates this graph's output.
    """
    import onnx  # the training API needs a ModelProto (and imports onnx itself)

    d, c = weight.shape
    serialised = pb.model(
        nodes=_loss_nodes(),
        name="head_loss",
        inputs=[pb.value_info("features", ["batch", d]), pb.value_info("targets", ["batch", c])],
        outputs=[pb.value_info("loss", [])],
        initializers=[
            pb.tensor("weight", weight.astype(np.float32)),
            pb.tensor("bias", bias.astype(np.float32)),
            pb.tensor("axis1", np.array([1], np.int64)),
        ],
        opset=_OPSET,
        ir_version=_IR_VERSION,
        producer="plada-agent",
    )
    return onnx.load_from_string(serialised)


def _set_adamw_attributes(optimizer_path: Path, *, weight_decay: float) -> None:
    """generate_artifacts emits HF-mode AdamW (eps 1e-6, no decay); make it PyTorch mode."""
    import onnx

    model = onnx.load(str(optimizer_path))
    found = False
    for node in model.graph.node:
        if node.op_type != "AdamWOptimizer":
            continue
        found = True
        for attr in node.attribute:
            if attr.name == "adam_mode":
                attr.i = 0
            elif attr.name == "epsilon":
                attr.f = ADAM_EPS
            elif attr.name == "weight_decay":
                attr.f = weight_decay
            elif attr.name == "alpha":
                attr.f = ADAM_BETA1
            elif attr.name == "beta":
                attr.f = ADAM_BETA2
    if not found:
        raise TrainerError(f"no AdamWOptimizer node in generated {optimizer_path.name}")
    onnx.save(model, str(optimizer_path))


class OrtTrainingTrainer:
    """The ONNX Runtime on-device training API; artifacts generated here for the class count."""

    name = "ort-training"

    def __init__(self) -> None:
        self._artifacts, self._api = _import_ort_training()

    def train(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        num_classes: int,
        hp: HeadHyperParams,
        consume: bool = False,
    ) -> HeadTrainResult:
        plan = plan_training(features, labels, num_classes=num_classes, hp=hp, consume=consume)
        api = self._api
        with tempfile.TemporaryDirectory(prefix="plada-ort-artifacts-") as tmp:
            directory = Path(tmp) / "artifacts"
            directory.mkdir()  # generate_artifacts needs it to exist
            base = build_training_base_model(plan.weight0, plan.bias0)
            try:
                self._artifacts.generate_artifacts(
                    base,
                    requires_grad=["weight", "bias"],
                    frozen_params=["axis1"],
                    loss=None,
                    optimizer=self._artifacts.OptimType.AdamW,
                    artifact_directory=str(directory),
                )
                _set_adamw_attributes(
                    directory / "optimizer_model.onnx", weight_decay=hp.weight_decay
                )
                state = api.CheckpointState.load_checkpoint(str(directory / "checkpoint"))
                module = api.Module(
                    str(directory / "training_model.onnx"),
                    state,
                    str(directory / "eval_model.onnx"),
                    device="cpu",
                )
                optimizer = api.Optimizer(str(directory / "optimizer_model.onnx"), module)
            except TrainerError:
                raise
            except Exception as exc:  # the training API raises bare RuntimeErrors
                raise TrainerError(f"ort-training could not set up training: {exc}") from exc
            module.train()
            step_losses = np.empty(len(plan.batches), dtype=np.float32)
            for step, rows in enumerate(plan.batches):
                optimizer.set_learning_rate(float(plan.rates[step]))
                step_losses[step] = module(plan.x[rows], plan.targets[rows])
                optimizer.step()
                module.lazy_reset_grad()
            weight = np.array(state.parameters["weight"].data, dtype=np.float32)
            bias = np.array(state.parameters["bias"].data, dtype=np.float32)
        return finish_training(
            plan,
            weight=weight,
            bias=bias,
            step_losses=step_losses,
            labels=labels,
        )


def make_trainer(backend: str, *, threads: int = 1) -> HeadTrainer:
    """The trainer for a config's `[head] backend`; TrainerError if unknown or unavailable here."""
    if backend == "numpy":
        return NumpyTrainer()
    if backend == "ort-graph":
        return OrtGraphTrainer(threads=threads)
    if backend == "ort-training":
        return OrtTrainingTrainer()
    raise TrainerError(f"unknown head backend {backend!r}; expected one of {', '.join(BACKENDS)}")


def available_backends() -> list[str]:
    """Backends that can run in this environment."""
    found: list[str] = ["numpy"]
    if importlib.util.find_spec("onnxruntime") is not None:
        found.append("ort-graph")
        try:
            _import_ort_training()
            found.append("ort-training")
        except TrainerError:
            pass
    return found
