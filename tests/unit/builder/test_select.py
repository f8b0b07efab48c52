"""Selection strategies, quotas and budgets."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from builder.errors import BudgetError, BuilderError
from builder.pipeline.budget import Budget, parse_budget
from builder.pipeline.scores import ReferenceScores, score_reference
from builder.pipeline.select import (
    FLEET_STRATEGIES,
    STRATEGIES,
    Selection,
    allocate_quotas,
    select,
)
from builder.pipeline.sizing import fit_to_bytes, refine_upward


def _scores(n: int = 200, num_classes: int = 4, seed: int = 0) -> ReferenceScores:
    """Class 0 is both the most common and the most confident: vanilla low energy collapses."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random(n) < 0.7, 0, rng.integers(1, num_classes, n))
    logits = rng.normal(0, 0.5, (n, num_classes))
    logits[np.arange(n), labels] += np.where(labels == 0, 8.0, 3.0)
    feats = rng.normal(0, 1, (n, 6)).astype(np.float32)
    return score_reference(
        logits,
        reference_features=feats,
        target_features=feats[:40],
        target_labels=np.arange(40) % num_classes,
    )


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_select_keeps_exactly_keep_sorted_unique(strategy: str) -> None:
    # Prepare
    scores = _scores()
    if strategy in FLEET_STRATEGIES:  # every image agreed on by every device class
        scores = replace(scores, agreement=np.ones(len(scores), dtype=bool))
    # Execute
    sel = select(scores, strategy=strategy, keep=37, seed=3)
    # Assert
    assert sel.keep == 37
    assert np.all(np.diff(sel.indices) > 0)
    assert sel.labels.shape == sel.indices.shape
    assert sel.labels.max() < 4


def test_select_low_energy_collapses_and_quotas_repair_it() -> None:
    # Prepare
    scores = _scores()
    # Execute
    vanilla = select(scores, strategy="low-energy", keep=20)
    safety = select(scores, strategy="safety-net", keep=20, params={"s": 1.0, "alpha": 0.0})
    topk = select(scores, strategy="class-top-k", keep=20)
    # Assert
    assert vanilla.class_counts(4).tolist() == [20, 0, 0, 0]
    assert safety.class_counts(4).tolist() == [5, 5, 5, 5]
    assert topk.class_counts(4).tolist() == [5, 5, 5, 5]
    assert np.all(scores.energy[vanilla.indices] <= np.sort(scores.energy)[19])


def test_select_high_energy_takes_the_top() -> None:
    scores = _scores()
    sel = select(scores, strategy="high-energy", keep=10)
    assert set(sel.indices.tolist()) == set(np.argsort(-scores.energy)[:10].tolist())


def test_select_safety_net_fills_rest_by_global_energy() -> None:
    # Prepare
    scores = _scores()
    # Execute
    sel = select(scores, strategy="safety-net", keep=40, params={"s": 0.5, "alpha": 0.0})
    # Assert: 20 reserved (5 per class), the other 20 lowest energy overall (class 0 here).
    counts = sel.class_counts(4)
    assert counts[1:].tolist() == [5, 5, 5]
    assert counts[0] == 25
    assert sel.params == {"s": 0.5, "alpha": 0.0}


def test_select_rejects_unknown_strategy_and_bad_params() -> None:
    scores = _scores()
    with pytest.raises(BuilderError, match="unknown strategy"):
        select(scores, strategy="magic", keep=3)
    with pytest.raises(BuilderError, match="s must be"):
        select(scores, strategy="safety-net", keep=3, params={"s": 2.0})


def test_select_random_depends_on_seed() -> None:
    scores = _scores()
    a = select(scores, strategy="random", keep=30, seed=1)
    b = select(scores, strategy="random", keep=30, seed=2)
    assert not np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.labels, scores.labels[a.indices])


def test_allocate_quotas_caps_and_redistributes() -> None:
    quotas = allocate_quotas(np.array([2, 100, 100]), np.ones(3), 30)
    assert quotas.tolist() == [2, 14, 14]
    assert allocate_quotas(np.array([1, 0, 3]), np.ones(3), 10).tolist() == [1, 0, 3]
    prop = allocate_quotas(np.array([100, 100]), np.array([3.0, 1.0]), 8)
    assert prop.tolist() == [6, 2]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2KiB", Budget("bytes", 2048)),
        ("8kB", Budget("bytes", 8000)),
        ("1500B", Budget("bytes", 1500)),
        ("1.5MiB", Budget("bytes", 1572864)),
        ("1%", Budget("ratio", 0.01)),
        ("0.05", Budget("ratio", 0.05)),
        ("834", Budget("count", 834)),
    ],
)
def test_parse_budget_forms(text: str, expected: Budget) -> None:
    assert parse_budget(text) == expected


@pytest.mark.parametrize("text", ["", "2 parsecs", "0", "150%", "KiB"])
def test_parse_budget_rejects_nonsense(text: str) -> None:
    with pytest.raises(BudgetError, match="budget"):
        parse_budget(text)


def test_budget_keep_for() -> None:
    assert parse_budget("1%").keep_for(1000) == 10
    assert parse_budget("5000").keep_for(1000) == 1000
    with pytest.raises(BudgetError):
        parse_budget("1KiB").keep_for(1000)


def _fake_make(keep: int) -> Selection:
    idx = np.arange(keep, dtype=np.int64)
    return Selection(idx, idx % 2, "random")


def test_fit_to_bytes_finds_largest_fitting_keep() -> None:
    # Execute: size = 10 + 3 bytes per kept image.
    sel, size = fit_to_bytes(
        _fake_make, lambda s: 10 + 3 * s.keep, max_bytes=100, min_keep=2, max_keep=1000
    )
    # Assert
    assert sel.keep == 30 and size == 100


def test_fit_to_bytes_names_a_too_small_budget() -> None:
    with pytest.raises(BudgetError, match=r"too small.*one per class"):
        fit_to_bytes(_fake_make, lambda s: 50 + s.keep, max_bytes=40, min_keep=2, max_keep=10)


def test_refine_upward_grows_while_the_exact_size_fits() -> None:
    # Prepare: the exact size is 10 % under the bound the search used.
    start = _fake_make(100)
    # Execute
    sel, size = refine_upward(
        _fake_make, lambda s: int(0.9 * 3 * s.keep), start=start, max_bytes=300, max_keep=1000
    )
    # Assert: 1.03 and 1.06 fit (278, 286 bytes), 1.12 (302 bytes) does not.
    assert sel.keep == 106 and size == 286


def test_refine_upward_rejects_a_start_over_budget() -> None:
    with pytest.raises(BudgetError, match="over the 10 budget"):
        refine_upward(_fake_make, lambda s: s.keep, start=_fake_make(20), max_bytes=10, max_keep=50)


def test_consensus_draws_equal_quotas_from_the_agreeing_images_only() -> None:
    # Prepare: every other image is agreed on
    scores = _scores()
    agree = np.arange(len(scores)) % 2 == 0
    scores = replace(scores, agreement=agree)
    # Execute
    sel = select(scores, strategy="consensus", keep=20, seed=1)
    # Assert
    assert sel.keep == 20 and np.all(agree[sel.indices])
    assert np.all(sel.labels == scores.labels[sel.indices])
    assert np.bincount(sel.labels, minlength=4).tolist() == [5, 5, 5, 5]


def test_consensus_takes_at_most_the_agreeing_images() -> None:
    scores = _scores()
    agree = np.zeros(len(scores), dtype=bool)
    agree[:7] = True
    sel = select(replace(scores, agreement=agree), strategy="consensus", keep=50, seed=0)
    assert sel.indices.tolist() == list(range(7))


def test_consensus_needs_the_device_classes_agreement() -> None:
    with pytest.raises(BuilderError, match="several device classes"):
        select(_scores(), strategy="consensus", keep=10)
    none = replace(_scores(), agreement=np.zeros(200, dtype=bool))
    with pytest.raises(BudgetError, match="labelled alike by every device class"):
        select(none, strategy="consensus", keep=10)
