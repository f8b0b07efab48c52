"""Reference scores: energy, entropy, max-softmax, prototype cosine."""

from __future__ import annotations

import numpy as np
import pytest

from builder.errors import BuilderError
from builder.pipeline.scores import energy_scores, score_reference


def test_energy_scores_match_definition_and_temperature() -> None:
    # Prepare
    logits = np.array([[1.0, 2.0, 3.0], [10.0, 0.0, 0.0]])
    # Execute
    e1 = energy_scores(logits, temperature=1.0)
    e2 = energy_scores(logits, temperature=2.0)
    # Assert
    expected = -np.log(np.exp(logits).sum(axis=1))
    np.testing.assert_allclose(e1, expected, rtol=1e-6)
    np.testing.assert_allclose(e2, -2 * np.log(np.exp(logits / 2).sum(axis=1)), rtol=1e-6)
    assert e1[1] < e1[0]  # the confident, large-logit row is "in-distribution"


def test_energy_scores_rejects_bad_temperature() -> None:
    with pytest.raises(BuilderError, match="temperature"):
        energy_scores(np.zeros((1, 2)), temperature=0)


def test_score_reference_labels_entropy_maxsoftmax() -> None:
    # Prepare
    logits = np.array([[0.0, 0.0], [5.0, -5.0], [-1.0, 3.0]])
    # Execute
    s = score_reference(logits)
    # Assert
    assert s.labels.tolist() == [0, 0, 1]
    assert s.num_classes == 2 and len(s) == 3
    assert s.entropy[0] == pytest.approx(np.log(2), rel=1e-5)
    assert s.entropy[1] < s.entropy[2] < s.entropy[0]
    assert s.max_softmax[0] == pytest.approx(0.5)
    assert s.prototype_cos is None


def test_score_reference_prototype_cosine_points_at_own_class() -> None:
    # Prepare: reference images near class 0's or class 1's mean.
    rng = np.random.default_rng(0)
    target = np.concatenate([rng.normal(5, 0.1, (5, 4)), rng.normal(-5, 0.1, (5, 4))])
    target[:, 1] *= -1
    labels = np.repeat([0, 1], 5)
    reference = np.concatenate([target[:2] + 0.01, target[5:7] - 0.01])
    # Execute
    s = score_reference(
        np.tile([0.0, 1e-3], (4, 1)),
        reference_features=reference,
        target_features=target,
        target_labels=labels,
    )
    # Assert
    assert s.prototype_cos is not None
    assert np.argmax(s.prototype_cos, axis=1).tolist() == [0, 0, 1, 1]
    assert np.all(np.abs(s.prototype_cos) <= 1.0 + 1e-5)
