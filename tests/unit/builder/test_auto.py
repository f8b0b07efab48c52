"""--auto: candidates validated on k-fold splits of train, chosen with robust tie-breaks."""

from __future__ import annotations

import numpy as np

from builder.pipeline.candidates import CandidateSpec, candidate_keeps
from builder.pipeline.validate import AutoInputs, choose_candidate, validate_candidates
from plada.head import HeadHyperParams


def _inputs(seed: int = 0) -> AutoInputs:
    """3 target classes; the corpus is 80 % a blob that the teacher labels class 0 with great
    confidence (far from every decision boundary), so vanilla low energy collapses onto class 0."""
    rng = np.random.default_rng(seed)
    centers = np.array([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    train_labels = np.repeat(np.arange(3), 12)
    train = centers[train_labels] + rng.normal(0, 0.7, (36, 4))
    ref_labels = rng.integers(0, 3, 300)
    ref = centers[ref_labels] + rng.normal(0, 0.7, (300, 4))
    ref[:240] = np.array([5.0, -0.5, -0.5, 0]) + rng.normal(0, 0.3, (240, 4))
    # The device sees a rotated, noisier view of the same images.
    rot = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    return AutoInputs(
        train_teacher=train.astype(np.float32),
        train_labels=train_labels,
        train_device=(train @ rot).astype(np.float32),
        reference_teacher=ref.astype(np.float32),
        reference_device=(ref @ rot + rng.normal(0, 0.2, ref.shape)).astype(np.float32),
        num_classes=3,
        teacher_l2=0.01,
    )


def test_validate_candidates_prefers_quotas_over_collapsing_low_energy() -> None:
    # Prepare
    inputs = _inputs()
    specs = [
        CandidateSpec("low-energy", {}, 30),
        CandidateSpec("safety-net", {"s": 1.0, "alpha": 0.0}, 30),
    ]
    # Execute
    result = validate_candidates(
        inputs, specs, num_folds=3, repeats=1, hp=HeadHyperParams(epochs=10, learning_rate=1e-2)
    )
    # Assert
    assert result.scores.shape == (2, 3)
    assert result.mean(1) > result.mean(0) + 0.2
    assert specs[result.chosen].strategy == "safety-net"


def test_validate_candidates_reduces_folds_for_tiny_classes() -> None:
    # Prepare
    inputs = _inputs()
    keep = np.r_[0:12, 12:24, 24:26]  # class 2 keeps 2 images only
    small = AutoInputs(
        train_teacher=inputs.train_teacher[keep],
        train_labels=inputs.train_labels[keep],
        train_device=inputs.train_device[keep],
        reference_teacher=inputs.reference_teacher,
        reference_device=inputs.reference_device,
        num_classes=3,
        teacher_l2=0.01,
    )
    # Execute
    result = validate_candidates(
        small,
        [CandidateSpec("class-top-k", {}, 9)],
        num_folds=5,
        repeats=2,
        hp=HeadHyperParams(epochs=5),
    )
    # Assert
    assert result.num_folds == 2 and result.scores.shape == (1, 4)
    assert "reduced" in result.notes[0]


def test_choose_candidate_breaks_ties_towards_robust_then_larger_keep() -> None:
    # Prepare
    specs = [
        CandidateSpec("low-energy", {}, 100),
        CandidateSpec("safety-net", {}, 50),
        CandidateSpec("safety-net", {}, 100),
        CandidateSpec("random", {}, 100),
    ]
    scores = np.array([[0.80, 0.82], [0.79, 0.81], [0.795, 0.805], [0.5, 0.5]])
    # Execute
    tied, _ = choose_candidate(specs, scores, tie_tolerance=0.02)
    strict, _ = choose_candidate(specs, scores, tie_tolerance=0.0)
    # Assert
    assert tied == 2
    assert strict == 0


def test_candidate_keeps_are_at_or_below_cap() -> None:
    assert candidate_keeps(1000, min_keep=10, fractions=(1.0, 0.5, 0.25)) == [1000, 500, 250]
    assert candidate_keeps(12, min_keep=10) == [12, 10]
