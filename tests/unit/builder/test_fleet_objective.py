"""The fleet objective: per split, the worst class's ratio to its own oracle or a weighted mean."""

from __future__ import annotations

import numpy as np
import pytest

from builder.errors import BuilderError
from builder.pipeline.objective import (
    FleetObjective,
    check_weights,
    fleet_scores,
    parse_fleet_weights,
    worst_class,
)

# 2 classes x 2 candidates x 2 splits; class b's oracle is half of a's, so its ratios double.
SCORES = np.array([[[0.8, 0.6], [0.7, 0.7]], [[0.2, 0.3], [0.4, 0.2]]])
ORACLE = np.array([[1.0, 1.0], [0.5, 0.5]])


def test_worst_takes_the_lowest_ratio_per_split() -> None:
    # Execute
    out = fleet_scores(SCORES, ORACLE, ["a", "b"], FleetObjective("worst"))
    # Assert: ratios a = [[.8,.6],[.7,.7]], b = [[.4,.6],[.8,.4]]
    np.testing.assert_allclose(out, [[0.4, 0.6], [0.7, 0.4]])


def test_weighted_mean_uses_normalised_weights() -> None:
    # Execute
    out = fleet_scores(SCORES, ORACLE, ["a", "b"], FleetObjective("weighted", {"a": 3, "b": 1}))
    # Assert
    np.testing.assert_allclose(out, [[0.7, 0.6], [0.725, 0.625]])


def test_one_class_and_default_objective_score_the_raw_accuracy() -> None:
    np.testing.assert_allclose(
        fleet_scores(SCORES[:1], ORACLE[:1], ["a"], FleetObjective()), SCORES[0]
    )
    np.testing.assert_allclose(
        fleet_scores(SCORES, ORACLE, ["a", "b"], FleetObjective("default")), SCORES[0]
    )


def test_the_objective_can_choose_differently_from_the_default_class() -> None:
    # Candidate 0 is best for class a alone, candidate 1 for the worst class.
    scores = np.array([[[0.9, 0.9], [0.8, 0.8]], [[0.2, 0.2], [0.4, 0.4]]])
    oracle = np.array([[1.0, 1.0], [0.5, 0.5]])
    worst = fleet_scores(scores, oracle, ["a", "b"], FleetObjective("worst")).mean(axis=1)
    alone = fleet_scores(scores, oracle, ["a", "b"], FleetObjective("default")).mean(axis=1)
    assert int(np.argmax(worst)) == 1 and int(np.argmax(alone)) == 0


def test_parse_fleet_weights() -> None:
    assert parse_fleet_weights("lite0-64-int8=8, lite1-96=2") == {
        "lite0-64-int8": 8.0,
        "lite1-96": 2.0,
    }
    for bad, says in (
        ("lite0-64-int8", "CLASS=WEIGHT"),
        ("a=x", "CLASS=WEIGHT"),
        ("a=-1", "CLASS=WEIGHT"),
        ("a=1,a=2", "twice"),
        ("a=0", "sum to 0"),
        (",", "empty"),
    ):
        with pytest.raises(BuilderError, match=says):
            parse_fleet_weights(bad)


def test_weights_must_cover_exactly_the_validated_classes() -> None:
    objective = FleetObjective("weighted", {"a": 1.0, "c": 1.0})
    with pytest.raises(BuilderError, match="not validated: c"):
        check_weights(objective, ["a", "b"])
    with pytest.raises(BuilderError, match="miss device classes: b"):
        check_weights(FleetObjective("weighted", {"a": 1.0}), ["a", "b"])
    with pytest.raises(BuilderError, match="needs per-class weights"):
        FleetObjective("weighted")


def test_worst_class_names_the_lowest_ratio() -> None:
    assert worst_class({"a": 0.9, "b": 0.7, "c": 0.7}) == "b"
