"""--auto on several device classes (the fleet objective) and on more splits for the finalists."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from builder.pipeline.candidates import CandidateSpec
from builder.pipeline.objective import FleetObjective
from builder.pipeline.validate import (
    AutoInputs,
    DeviceRows,
    ValidationResult,
    validate_candidates,
)
from plada.head import HeadHyperParams
from tests.unit.builder.test_auto import _inputs

HP = HeadHyperParams(epochs=5, learning_rate=1e-2, min_steps=50)
SPECS = [
    CandidateSpec("low-energy", {}, 30),
    CandidateSpec("safety-net", {"s": 1.0, "alpha": 0.0}, 30),
    CandidateSpec("class-top-k", {}, 12),
    CandidateSpec("random", {}, 20),
]


def test_finalists_are_validated_on_more_splits_and_report_their_spread() -> None:
    # Execute
    result = validate_candidates(
        _inputs(), SPECS, num_folds=3, repeats=1, finalists=2, finalist_repeats=2, hp=HP
    )
    # Assert: the first round has 3 splits per candidate, the 2 finalists 3 + 6
    assert result.scores.shape == (4, 3)
    assert len(result.finalists) == 2 and result.chosen in result.finalists
    for i in range(len(SPECS)):
        assert result.num_splits(i) == (9 if i in result.finalists else 3)
    row = result.per_class["device"][result.chosen]
    assert result.std(result.chosen) == float(np.std(row)) and row.shape == (9,)
    np.testing.assert_array_equal(row[:3], result.scores[result.chosen])
    # the finalists are the first round's best
    first_means = result.scores.mean(axis=1)
    assert set(result.finalists) == set(np.argsort(-first_means, kind="stable")[:2].tolist())


def test_without_finalists_the_choice_is_the_first_round_one() -> None:
    result = validate_candidates(_inputs(), SPECS, num_folds=3, repeats=1, hp=HP)
    assert result.finalists == [] and all(result.num_splits(i) == 3 for i in range(4))


def rotated_fleet() -> AutoInputs:
    """Two classes: `a` (test_auto's inputs) and `b`, which sees the same images through another
    random rotation."""
    inputs = _inputs()
    rng = np.random.default_rng(5)
    rot = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    other = DeviceRows(inputs.train_teacher @ rot, inputs.reference_teacher @ rot)
    return replace(inputs, default_device="a", more_devices={"b": other})


def test_every_class_is_validated_against_its_own_oracle() -> None:
    # Prepare
    fleet = rotated_fleet()
    # Execute
    result = validate_candidates(
        fleet, SPECS, num_folds=3, repeats=1, finalists=2, finalist_repeats=1, hp=HP
    )
    # Assert: per split, the objective is the lower of the two classes' ratios to their oracles
    assert list(result.per_class) == ["a", "b"]
    assert result.oracle["a"].shape == (6,) and np.all(result.oracle["b"] > 0.5)
    scored = [i for i in range(len(SPECS)) if not np.isnan(result.objective[i]).any()]
    assert result.chosen in scored
    for i in scored:
        n = result.num_splits(i)
        ratios = [result.per_class[c][i] / result.oracle[c][:n] for c in ("a", "b")]
        np.testing.assert_allclose(result.objective[i], np.minimum(*ratios))
        assert result.class_ratio("a", i) == float(ratios[0].mean())
    weighted = validate_candidates(
        replace(fleet, objective=FleetObjective("weighted", {"a": 1.0, "b": 3.0})),
        SPECS, num_folds=3, repeats=1, hp=HP,
    )  # fmt: skip
    i = 0
    expected = (weighted.per_class["a"][i] / weighted.oracle["a"]) * 0.25 + (
        weighted.per_class["b"][i] / weighted.oracle["b"]
    ) * 0.75
    np.testing.assert_allclose(weighted.objective[i], expected)


def test_pruning_never_changes_the_choice() -> None:
    # Prepare: the second class sees a noisier view, so classes disagree on candidates
    for seed in range(3):
        inputs = _inputs(seed)
        rng = np.random.default_rng(seed + 10)
        noisy = DeviceRows(
            inputs.train_device + rng.normal(0, 1.0, inputs.train_device.shape),
            inputs.reference_device + rng.normal(0, 1.0, inputs.reference_device.shape),
        )
        fleet = replace(inputs, default_device="a", more_devices={"b": noisy})
        # Execute
        kwargs = {"num_folds": 3, "repeats": 1, "finalists": 2, "finalist_repeats": 1, "hp": HP}
        pruned = validate_candidates(fleet, SPECS, **kwargs)  # type: ignore[arg-type]
        full = validate_candidates(fleet, SPECS, prune=False, **kwargs)  # type: ignore[arg-type]
        # Assert
        assert pruned.chosen == full.chosen
        assert pruned.finalists == full.finalists
        for i in range(len(SPECS)):
            if not np.isnan(pruned.objective[i]).any():
                np.testing.assert_allclose(pruned.objective[i], full.objective[i])


def test_heads_on_several_threads_give_the_one_thread_result() -> None:
    # Prepare: two classes, finalists, so every kind of work goes through the pool
    inputs = _inputs()
    rot = np.linalg.qr(np.random.default_rng(9).normal(size=(4, 4)))[0]
    other = DeviceRows(inputs.train_teacher @ rot, inputs.reference_teacher @ rot)
    fleet = replace(inputs, default_device="a", more_devices={"b": other})
    seen: list[tuple[int, int]] = []

    def run(workers: int) -> ValidationResult:
        return validate_candidates(
            fleet, SPECS, num_folds=3, repeats=2, finalists=2, finalist_repeats=1, hp=HP,
            workers=workers, progress=lambda done, total: seen.append((done, total)),
        )  # fmt: skip

    # Execute
    one, three = run(1), run(3)
    # Assert
    assert three.chosen == one.chosen and three.finalists == one.finalists
    np.testing.assert_array_equal(three.scores, one.scores)
    for name in ("a", "b"):
        np.testing.assert_array_equal(three.oracle[name], one.oracle[name])
        for mine, theirs in zip(three.per_class[name], one.per_class[name], strict=True):
            np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(three.objective, one.objective, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert seen[-1] == (len(SPECS) * 6, len(SPECS) * 6) and len(seen) == 2 * len(SPECS) * 6
