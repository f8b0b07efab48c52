"""The consensus strategy's agreement: every device class's own teacher, fitted on the split's
training part only, labels a reference image as the build teacher does."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from builder.pipeline.candidates import CandidateSpec
from builder.pipeline.consensus import ClassLabels, agreement, class_l2
from builder.pipeline.teacher import TeacherConfig
from builder.pipeline.validate import DeviceRows, _Evaluator, validate_candidates
from plada.head import HeadHyperParams
from tests.unit.builder.test_auto import _inputs
from tests.unit.builder.test_auto_fleet import rotated_fleet

CONFIG = TeacherConfig(l2_grid=())
HP = HeadHyperParams(epochs=5, learning_rate=1e-2, min_steps=50)


def _classes() -> tuple[dict[str, DeviceRows], np.ndarray, np.ndarray]:
    """Two classes that see 3 well separated classes; class `b` sees the reference images
    20..39 as the next class (another encoder reading those images differently)."""
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 4, (3, 5))
    y_train = np.repeat(np.arange(3), 10)
    y_ref = np.arange(60) % 3
    train = centers[y_train] + rng.normal(0, 0.3, (30, 5))
    ref = centers[y_ref] + rng.normal(0, 0.3, (60, 5))
    shifted = ref.copy()
    shifted[20:40] = centers[(y_ref[20:40] + 1) % 3] + rng.normal(0, 0.3, (20, 5))
    classes = {"a": DeviceRows(train, ref), "b": DeviceRows(train, shifted)}
    return classes, y_train, y_ref


def test_an_image_agrees_only_when_every_class_reads_it_as_the_teacher_does() -> None:
    # Prepare
    classes, y_train, y_ref = _classes()
    l2 = class_l2(classes, y_train, num_classes=3, config=TeacherConfig())
    # Execute
    agree = agreement(
        y_ref, classes, y_train, np.arange(30), num_classes=3, l2=l2, config=TeacherConfig()
    )
    # Assert
    assert set(l2) == {"a", "b"}
    expected = np.ones(60, dtype=bool)
    expected[20:40] = False
    np.testing.assert_array_equal(agree, expected)


def test_class_teachers_learn_from_the_given_rows_only() -> None:
    # Prepare: train rows of classes 0 and 1 only: class 2's reference images cannot agree
    classes, y_train, y_ref = _classes()
    rows = np.flatnonzero(y_train < 2)
    # Execute
    agree = agreement(
        y_ref, classes, y_train, rows, num_classes=3, l2={"a": 1e-2, "b": 1e-2},
        config=CONFIG,
    )  # fmt: skip
    # Assert
    assert not agree[y_ref == 2].any()


def test_validation_refits_the_agreement_on_each_split_s_training_part() -> None:
    # Prepare
    fleet = rotated_fleet()
    l2 = class_l2(fleet.devices, fleet.train_labels, num_classes=fleet.num_classes, config=CONFIG)
    fleet = replace(fleet, class_l2=l2)
    specs = [CandidateSpec("consensus", {}, 20), CandidateSpec("random-balanced", {}, 20)]
    hp = HP
    # Execute
    result = validate_candidates(fleet, specs, num_folds=3, repeats=1, hp=hp)
    ev = _Evaluator(fleet, specs, [np.arange(0, fleet.train_labels.shape[0], 3)], seed=0, hp=hp)
    scores = ev._reference_scores(0)
    # Assert: the split's agreement is the class teachers' on that split's training part
    train_idx, _ = ev._parts(0)
    expected = agreement(
        scores.labels, fleet.devices, fleet.train_labels, train_idx,
        num_classes=fleet.num_classes, l2=l2, config=TeacherConfig(),
    )  # fmt: skip
    assert scores.agreement is not None
    np.testing.assert_array_equal(scores.agreement, expected)
    assert np.all(scores.agreement[ev._select(0, 0).indices])
    assert result.objective[0].shape == (3,)


def test_no_agreement_is_computed_without_a_fleet_strategy() -> None:
    inputs = replace(_inputs(), class_l2={"device": 1e-2})
    ev = _Evaluator(
        inputs, [CandidateSpec("random", {}, 20)], [np.arange(0, 30, 3)], seed=0, hp=None
    )
    assert ev._reference_scores(0).agreement is None


def test_class_teachers_are_fitted_once_per_split_and_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare: count the fits
    import builder.pipeline.consensus as consensus

    classes, y_train, y_ref = _classes()
    fits: list[int] = []
    from builder.pipeline.teacher import fit_teacher as real

    def counted(*args: Any, **kwargs: Any) -> Any:
        fits.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(consensus, "fit_teacher", counted)
    memo = ClassLabels()
    l2 = {"a": 1e-2, "b": 1e-2}
    rows = np.arange(30)

    def run(cls: dict[str, DeviceRows], labels: np.ndarray) -> np.ndarray:
        return agreement(labels, cls, y_train, rows, num_classes=3, l2=l2, config=CONFIG, memo=memo)

    # Execute: a second teacher's labels on the same split, then another view of the corpus
    first = run(classes, y_ref)
    second = run(classes, (y_ref + 1) % 3)
    viewed = {n: DeviceRows(c.train, c.reference.copy()) for n, c in classes.items()}
    third = run(viewed, y_ref)
    # Assert: two fits for the first teacher, none for the second, two for the new reference
    assert len(fits) == 4
    assert not second.any()
    np.testing.assert_array_equal(first, third)


def test_a_split_without_agreed_images_scores_the_consensus_candidate_zero() -> None:
    # Prepare: the split's scores as a fleet whose classes agree on no image would give them
    fleet = replace(rotated_fleet(), class_l2={"a": 1e-2, "b": 1e-2})
    specs = [CandidateSpec("consensus", {}, 20), CandidateSpec("random-balanced", {}, 20)]
    ev = _Evaluator(fleet, specs, [np.arange(0, 36, 3)], seed=0, hp=HP)
    scores = ev._reference_scores(0)
    ev._teacher[0] = replace(scores, agreement=np.zeros(len(scores), dtype=bool))
    # Execute / Assert: the candidate loses, the other is scored as usual
    assert ev.score(0, 0, 0) == 0.0
    assert ev.score(0, 1, 0) > 0.0
