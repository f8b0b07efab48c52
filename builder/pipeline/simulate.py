"""What a device will reach: its head trained on the selection, over its OWN encoder's features.

The device's head is trained exactly as the agent trains it (`plada.head.train_head`, the agent's
hyper-parameters) on the selected reference images' device features with their pseudo-labels, and
evaluated on target images embedded by the same device encoder. The device-oracle is the same head
trained on the target's whole labelled train split instead: what the device would reach if it had
been sent the labelled images themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from builder.errors import BuilderError
from builder.features.sources import TaskFeatures
from builder.features.stream import take_rows
from builder.pipeline.select import Selection
from builder.pipeline.teacher import balanced_accuracy
from plada.head import HeadHyperParams, HeadWeights, predict_proba, train_head_weights
from plada.ordered_pool import map_ordered


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    balanced_accuracy: float
    num_examples: int


def evaluate_head(weights: HeadWeights, features: np.ndarray, labels: np.ndarray) -> EvalResult:
    if features.shape[0] != labels.shape[0] or features.shape[0] == 0:
        raise BuilderError(
            f"evaluation needs matching, non-empty features {features.shape} and labels "
            f"{labels.shape}"
        )
    pred = predict_proba(weights, features).argmax(axis=1)
    return EvalResult(
        accuracy=float(np.mean(pred == labels)),
        balanced_accuracy=balanced_accuracy(pred, labels),
        num_examples=int(labels.shape[0]),
    )


def train_on_selection(
    reference_features: np.ndarray,
    selection: Selection,
    *,
    num_classes: int,
    hp: HeadHyperParams | None = None,
) -> HeadWeights:
    """The device head trained on (reference_features[indices], pseudo-labels)."""
    if reference_features.shape[0] <= int(selection.indices.max(initial=-1)):
        raise BuilderError(
            f"selection index {int(selection.indices.max())} is outside the "
            f"{reference_features.shape[0]} reference features"
        )
    features = take_rows(reference_features, selection.indices)  # (k, D), a copy we own
    return train_head_weights(
        features,
        selection.labels,
        num_classes=num_classes,
        hp=hp or HeadHyperParams(),
        consume=True,
    )


def simulate_selection(
    reference_features: np.ndarray,
    selection: Selection,
    eval_features: np.ndarray,
    eval_labels: np.ndarray,
    *,
    num_classes: int,
    hp: HeadHyperParams | None = None,
) -> EvalResult:
    """Train the device head on the selection and evaluate it on (eval_features, eval_labels)."""
    weights = train_on_selection(reference_features, selection, num_classes=num_classes, hp=hp)
    return evaluate_head(weights, eval_features, eval_labels)


def device_oracle(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    *,
    num_classes: int,
    hp: HeadHyperParams | None = None,
) -> EvalResult:
    """The same device head trained on the whole labelled train split."""
    weights = train_head_weights(
        np.asarray(train_features, dtype=np.float32),
        train_labels,
        num_classes=num_classes,
        hp=hp or HeadHyperParams(),
    )
    return evaluate_head(weights, test_features, test_labels)


@dataclass(frozen=True)
class DeviceOutcome:
    """One device class: the payload's head and the head trained on the labelled train split."""

    encoder: str
    payload: EvalResult
    oracle: EvalResult


def simulate_devices(
    selection: Selection,
    devices: Mapping[str, TaskFeatures],
    *,
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    hp: HeadHyperParams,
) -> dict[str, DeviceOutcome]:
    """The simulation stage: every device class, with its own encoder's features."""
    return {
        name: DeviceOutcome(
            encoder=feats.encoder,
            payload=simulate_selection(
                feats.reference, selection, feats.test, test_labels, num_classes=num_classes, hp=hp
            ),
            oracle=device_oracle(
                feats.train, train_labels, feats.test, test_labels, num_classes=num_classes, hp=hp
            ),
        )
        for name, feats in devices.items()
    }


def test_candidates(
    selections: Sequence[Selection],
    device: TaskFeatures,
    *,
    test_labels: np.ndarray,
    num_classes: int,
    hp: HeadHyperParams,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> list[EvalResult]:
    """Every candidate on the test split of the default device class (for the report only: the
    choice was made on the train split before). The heads train on `workers` threads (default: one
    per core; their NumPy work runs mostly outside the GIL); the results are the same for any
    number."""

    def run(selection: Selection) -> EvalResult:
        return simulate_selection(
            device.reference, selection, device.test, test_labels, num_classes=num_classes, hp=hp
        )

    results = []
    for i, result in enumerate(map_ordered(run, selections, workers=workers, name="simulate")):
        results.append(result)
        if progress is not None:
            progress(i + 1, len(selections))
    return results
