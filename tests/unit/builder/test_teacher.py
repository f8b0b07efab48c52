"""The softmax-regression teacher and the train-split splits."""

from __future__ import annotations

import numpy as np
import pytest

from builder.errors import BuilderError
from builder.pipeline.teacher import (
    TeacherConfig,
    balanced_accuracy,
    fit_teacher,
    holdout_split,
    stratified_folds,
    teacher_accuracy,
)


def _blobs(n_per: int, num_classes: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), n_per)
    return (centers[labels] + rng.normal(0, 1, size=(len(labels), dim))).astype(np.float32), labels


def test_fit_teacher_separates_blobs() -> None:
    # Prepare
    x, y = _blobs(30, 3, 8, seed=0)
    xt, yt = _blobs(30, 3, 8, seed=0)
    # Execute
    teacher = fit_teacher(x, y, num_classes=3)
    # Assert
    assert teacher.logits(xt).shape == (90, 3)
    assert teacher_accuracy(teacher, xt, yt) > 0.95
    assert teacher.l2 in TeacherConfig().l2_grid


def test_fit_teacher_logits_fold_standardisation_in() -> None:
    # Prepare: features with a large offset and scale must still be handled.
    x, y = _blobs(20, 2, 4, seed=1)
    # Execute
    plain = fit_teacher(x, y, num_classes=2, l2=0.1)
    shifted = fit_teacher(x * 100 + 5000, y, num_classes=2, l2=0.1)
    # Assert
    np.testing.assert_allclose(plain.logits(x), shifted.logits(x * 100 + 5000), atol=1e-2)


def test_fit_teacher_rejects_single_class() -> None:
    with pytest.raises(BuilderError, match="two classes"):
        fit_teacher(np.zeros((4, 2), np.float32), np.zeros(4, np.int64), num_classes=2)


def test_stratified_folds_partition_and_balance() -> None:
    # Prepare
    labels = np.repeat(np.arange(3), [10, 10, 4])
    # Execute
    folds = stratified_folds(labels, num_folds=4, seed=0)
    # Assert
    joined = np.sort(np.concatenate(folds))
    assert joined.tolist() == list(range(24))
    for f in folds:
        assert np.bincount(labels[f], minlength=3)[:2].min() >= 2


def test_holdout_split_keeps_every_class_in_train() -> None:
    # Prepare
    labels = np.array([0, 0, 0, 0, 1, 1])
    # Execute
    train, val = holdout_split(labels, val_fraction=0.5, seed=0)
    # Assert
    assert set(labels[train]) == {0, 1}
    assert len(np.intersect1d(train, val)) == 0 and len(train) + len(val) == 6


def test_balanced_accuracy_weights_classes_equally() -> None:
    labels = np.array([0, 0, 0, 1])
    assert balanced_accuracy(np.array([0, 0, 0, 0]), labels) == pytest.approx(0.5)
