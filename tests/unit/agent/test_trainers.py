"""The three head-training backends reach the same losses and weights from the same data + seed."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from agent.errors import TrainerError
from agent.trainers import (
    NumpyTrainer,
    OrtGraphTrainer,
    OrtTrainingTrainer,
    available_backends,
    make_trainer,
)
from plada.errors import HeadTrainingError
from plada.head import HeadHyperParams, HeadTrainResult

_HAS_ORT_TRAINING = "ort-training" in available_backends()
# In .venv-ort-training the backend must work; elsewhere its tests skip (CI deselects them anyway).
_IN_ORT_VENV = Path(sys.prefix).name == ".venv-ort-training"
_needs_ort_training = pytest.mark.skipif(
    not (_HAS_ORT_TRAINING or _IN_ORT_VENV),
    reason="needs onnxruntime-training (.venv-ort-training)",
)
# Tolerances: float32 everywhere; reductions are ordered differently by each runtime.
_LOSS_ATOL = 1e-5
_WEIGHT_ATOL = 2e-5


def _data(n: int = 300, dim: int = 24, num_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    labels = np.concatenate([np.zeros(n // 2), rng.integers(1, num_classes, n - n // 2)])
    labels = labels.astype(np.int64)  # imbalanced: class balancing matters
    centers = rng.normal(0, 1.5, size=(num_classes, dim))
    features = centers[labels] + rng.normal(0, 1, size=(n, dim))
    return (features * 4 + 2).astype(np.float32), labels


_HP = HeadHyperParams(
    epochs=6,
    learning_rate=0.02,
    weight_decay=0.01,
    batch_size=32,
    class_balanced=True,
    label_smoothing=0.1,
    seed=3,
)


def _assert_same(a: HeadTrainResult, b: HeadTrainResult) -> None:
    assert np.abs(a.step_losses - b.step_losses).max() < _LOSS_ATOL
    assert np.abs(a.weights.weight - b.weights.weight).max() < _WEIGHT_ATOL
    assert np.abs(a.weights.bias - b.weights.bias).max() < _WEIGHT_ATOL
    assert np.array_equal(a.weights.mean, b.weights.mean)
    assert a.train_accuracy == pytest.approx(b.train_accuracy, abs=1 / 300)


def test_ort_graph_trainer_matches_numpy() -> None:
    # Prepare
    features, labels = _data()
    # Execute
    reference = NumpyTrainer().train(features, labels, num_classes=4, hp=_HP)
    graph = OrtGraphTrainer().train(features, labels, num_classes=4, hp=_HP)
    # Assert
    _assert_same(graph, reference)
    assert reference.losses[-1] < reference.losses[0]
    assert np.abs(reference.weights.weight).max() > 0.05  # it actually moved


@pytest.mark.parametrize("hp_change", [{"class_balanced": False}, {"schedule": "constant"}])
def test_ort_graph_trainer_matches_numpy_with_other_settings(hp_change: dict[str, object]) -> None:
    # Prepare
    features, labels = _data(n=100, dim=8, num_classes=3)
    hp = HeadHyperParams(**{**_HP.to_dict(), **hp_change})  # type: ignore[arg-type]
    labels = labels % 3
    # Execute
    reference = NumpyTrainer().train(features, labels, num_classes=3, hp=hp)
    graph = OrtGraphTrainer().train(features, labels, num_classes=3, hp=hp)
    # Assert
    _assert_same(graph, reference)


def test_ort_graph_trainer_is_deterministic() -> None:
    # Prepare
    features, labels = _data(n=120, dim=8)
    # Execute
    a = OrtGraphTrainer().train(features, labels, num_classes=4, hp=_HP)
    b = OrtGraphTrainer().train(features, labels, num_classes=4, hp=_HP)
    # Assert
    assert np.array_equal(a.weights.weight, b.weights.weight)
    assert np.array_equal(a.step_losses, b.step_losses)


def test_trainers_reject_bad_labels_the_same_way() -> None:
    # Prepare
    features = np.zeros((3, 2), np.float32)
    labels = np.array([0, 1, 7])
    # Execute / Assert
    for trainer in (NumpyTrainer(), OrtGraphTrainer()):
        with pytest.raises(HeadTrainingError, match="label 7 at position 2"):
            trainer.train(features, labels, num_classes=3, hp=_HP)


def test_make_trainer_names_unknown_backend() -> None:
    # Execute / Assert
    with pytest.raises(TrainerError, match="unknown head backend 'torch'"):
        make_trainer("torch")
    assert make_trainer("ort-graph").name == "ort-graph"
    assert make_trainer("numpy").name == "numpy"


@pytest.mark.skipif(_HAS_ORT_TRAINING, reason="this environment has onnxruntime-training")
def test_make_trainer_ort_training_explains_missing_package() -> None:
    # Execute / Assert
    with pytest.raises(TrainerError, match="onnxruntime-training"):
        make_trainer("ort-training")


@pytest.mark.ort_training
@_needs_ort_training
def test_ort_training_trainer_matches_numpy_and_ort_graph() -> None:
    # Prepare
    features, labels = _data()
    # Execute
    training_api = OrtTrainingTrainer().train(features, labels, num_classes=4, hp=_HP)
    reference = NumpyTrainer().train(features, labels, num_classes=4, hp=_HP)
    graph = OrtGraphTrainer().train(features, labels, num_classes=4, hp=_HP)
    # Assert
    _assert_same(training_api, reference)
    _assert_same(training_api, graph)
    assert "torch" not in sys.modules  # the sys.modules shim kept torch out


@pytest.mark.ort_training
@_needs_ort_training
def test_ort_training_trainer_handles_other_class_counts() -> None:
    # Prepare: artifacts are generated per task, here for 2 classes with a partial last batch
    features, labels = _data(n=70, dim=5, num_classes=2)
    hp = HeadHyperParams(epochs=3, learning_rate=0.05, batch_size=16, seed=1)
    # Execute
    training_api = OrtTrainingTrainer().train(features, labels, num_classes=2, hp=hp)
    reference = NumpyTrainer().train(features, labels, num_classes=2, hp=hp)
    # Assert
    _assert_same(training_api, reference)
