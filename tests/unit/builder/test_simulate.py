"""Device simulation: head trained on the selection's device features, and the device-oracle."""

from __future__ import annotations

import numpy as np
import pytest

from builder.errors import BuilderError
from builder.pipeline.select import Selection
from builder.pipeline.simulate import (
    device_oracle,
    evaluate_head,
    simulate_selection,
    train_on_selection,
)
from plada.head import HeadHyperParams

_HP = HeadHyperParams(epochs=10, learning_rate=1e-2)


def _clusters(n_per: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.array([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    labels = np.repeat(np.arange(3), n_per)
    return (centers[labels] + rng.normal(0, 1, (len(labels), 4))).astype(np.float32), labels


def test_simulate_selection_learns_from_right_labels_not_wrong_ones() -> None:
    # Prepare
    ref, ref_labels = _clusters(50, seed=0)
    test, test_labels = _clusters(30, seed=1)
    idx = np.arange(0, 150, 3)
    right = Selection(idx, ref_labels[idx], "random")
    wrong = Selection(idx, (ref_labels[idx] + 1) % 3, "random")
    # Execute
    good = simulate_selection(ref, right, test, test_labels, num_classes=3, hp=_HP)
    bad = simulate_selection(ref, wrong, test, test_labels, num_classes=3, hp=_HP)
    # Assert
    assert good.accuracy > 0.9 and good.balanced_accuracy > 0.9
    assert bad.accuracy < 0.1
    assert good.num_examples == 90


def test_device_oracle_trains_on_whole_train_split() -> None:
    train, train_labels = _clusters(20, seed=2)
    test, test_labels = _clusters(20, seed=3)
    result = device_oracle(train, train_labels, test, test_labels, num_classes=3, hp=_HP)
    assert result.accuracy > 0.9


def test_train_on_selection_rejects_index_outside_features() -> None:
    ref, _ = _clusters(2, seed=0)
    sel = Selection(np.array([0, 99]), np.array([0, 1]), "random")
    with pytest.raises(BuilderError, match="99"):
        train_on_selection(ref, sel, num_classes=3)


def test_evaluate_head_rejects_empty_eval_set() -> None:
    ref, labels = _clusters(5, seed=0)
    weights = train_on_selection(ref, Selection(np.arange(15), labels, "random"), num_classes=3)
    with pytest.raises(BuilderError, match="non-empty"):
        evaluate_head(weights, ref[:0], labels[:0])


def test_candidates_tested_on_threads_give_the_one_thread_results() -> None:
    # Prepare: several selections of one reference, the default class's test split
    from builder.features.sources import TaskFeatures
    from builder.pipeline.simulate import test_candidates as on_test  # not a pytest test

    ref, ref_labels = _clusters(60, seed=0)
    test, test_labels = _clusters(20, seed=1)
    device = TaskFeatures("enc", ref, test[:10], test)
    rng = np.random.default_rng(2)
    selections = [
        Selection(np.sort(rng.choice(180, k, replace=False)), ref_labels[:k], "random")
        for k in (12, 30, 45, 90, 120)
    ]
    seen: list[tuple[int, int]] = []
    # Execute
    one = on_test(selections, device, test_labels=test_labels, num_classes=3, hp=_HP, workers=1)
    three = on_test(
        selections, device, test_labels=test_labels, num_classes=3, hp=_HP, workers=3,
        progress=lambda i, n: seen.append((i, n)),
    )  # fmt: skip
    # Assert: the same results in the selections' order, progress counted to the end
    assert three == one
    assert seen == [(i, 5) for i in range(1, 6)]
