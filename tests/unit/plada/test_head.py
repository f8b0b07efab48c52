"""The NumPy reference head trainer: correctness of its math, determinism, and input checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from plada.errors import HeadTrainingError
from plada.head import (
    HeadHyperParams,
    HeadWeights,
    batch_schedule,
    feature_stats,
    initial_weights,
    learning_rate_schedule,
    num_epochs,
    predict_proba,
    smoothed_targets,
    train_head,
    train_head_weights,
)


def _blobs(n: int, dim: int, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs with shifted, scaled features (standardisation must matter)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2.0, size=(num_classes, dim))
    labels = rng.integers(0, num_classes, size=n)
    features = centers[labels] + rng.normal(0, 1.0, size=(n, dim))
    features = features * rng.uniform(0.1, 10, size=dim) + rng.uniform(-5, 5, size=dim)
    return features.astype(np.float32), labels.astype(np.int64)


def test_train_head_learns_separable_blobs() -> None:
    # Prepare
    features, labels = _blobs(400, 16, 4, seed=1)
    # Execute
    result = train_head(
        features,
        labels,
        num_classes=4,
        hp=HeadHyperParams(epochs=10, learning_rate=0.01, min_steps=0),
    )
    # Assert
    assert result.train_accuracy > 0.95
    assert result.losses.shape == (10,)
    assert result.losses[-1] < result.losses[0] * 0.5
    assert result.weights.weight.dtype == np.float32
    assert result.weights.weight.shape == (16, 4)


def test_train_head_is_deterministic_for_a_seed() -> None:
    # Prepare
    features, labels = _blobs(200, 8, 3, seed=2)
    hp = HeadHyperParams(epochs=3, seed=7)
    # Execute
    a = train_head(features, labels, num_classes=3, hp=hp)
    b = train_head(features, labels, num_classes=3, hp=hp)
    c = train_head(features, labels, num_classes=3, hp=HeadHyperParams(epochs=3, seed=8))
    # Assert
    assert np.array_equal(a.weights.weight, b.weights.weight)
    assert np.array_equal(a.step_losses, b.step_losses)
    assert not np.array_equal(a.weights.weight, c.weights.weight)


def test_train_head_gradient_matches_finite_differences() -> None:
    # The first AdamW step moves each parameter by -lr * sign(grad) (m/sqrt(v) = g/|g|), so the
    # step from the initial weights reveals the sign of the analytic gradient.
    # Prepare
    features, labels = _blobs(32, 5, 3, seed=3)
    hp = HeadHyperParams(
        epochs=1, batch_size=32, class_balanced=False, weight_decay=0.0, min_steps=0
    )
    mean, scale = feature_stats(features)
    x = ((features - mean) * scale).astype(np.float64)
    targets = smoothed_targets(labels, num_classes=3, smoothing=0.0).astype(np.float64)

    w0, _ = initial_weights(5, 3, seed=hp.seed)

    def loss(w: np.ndarray) -> float:
        z = x @ (w0.astype(np.float64) + w)
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(targets * logp).sum(axis=1).mean())

    eps = 1e-5
    numeric = np.zeros((5, 3))
    for i in range(5):
        for j in range(3):
            d = np.zeros((5, 3))
            d[i, j] = eps
            numeric[i, j] = (loss(d) - loss(-d)) / (2 * eps)
    # Execute
    result = train_head(features, labels, num_classes=3, hp=hp)
    # Assert
    moved = result.weights.weight - w0
    assert np.allclose(moved, -hp.learning_rate * np.sign(numeric), atol=1e-6)
    assert result.step_losses[0] == pytest.approx(loss(np.zeros((5, 3))), rel=1e-5)


def test_batch_schedule_balances_classes() -> None:
    # Prepare: 90 % of examples are class 0
    labels = np.array([0] * 900 + [1] * 100, dtype=np.int64)
    hp = HeadHyperParams(epochs=5, batch_size=100, class_balanced=True, min_steps=0)
    # Execute
    batches = batch_schedule(labels, num_classes=2, hp=hp)
    drawn = labels[np.concatenate(batches)]
    # Assert
    assert len(batches) == 50
    assert 0.45 < drawn.mean() < 0.55


def test_batch_schedule_without_balancing_is_a_permutation_per_epoch() -> None:
    # Prepare
    labels = np.arange(10, dtype=np.int64) % 2
    hp = HeadHyperParams(epochs=2, batch_size=4, class_balanced=False, min_steps=0)
    # Execute
    batches = batch_schedule(labels, num_classes=2, hp=hp)
    # Assert
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(np.concatenate(batches[:3]).tolist()) == list(range(10))


def test_num_epochs_grows_for_small_sets_to_reach_min_steps() -> None:
    # Prepare
    hp = HeadHyperParams(epochs=10, batch_size=64, min_steps=750)
    # Execute / Assert
    assert num_epochs(5000, hp) == 10  # 79 steps per epoch -> 790 steps
    assert num_epochs(300, hp) == 150  # 5 steps per epoch
    labels = np.arange(300) % 3
    assert len(batch_schedule(labels, num_classes=3, hp=hp)) == 750
    result = train_head(np.eye(300, 4, dtype=np.float32), labels, num_classes=3, hp=hp)
    assert result.losses.shape == (150,)


def test_learning_rate_schedule_cosine_decays_to_zero() -> None:
    # Prepare
    hp = HeadHyperParams(learning_rate=0.01)
    # Execute
    rates = learning_rate_schedule(100, hp)
    constant = learning_rate_schedule(5, HeadHyperParams(schedule="constant"))
    # Assert
    assert rates[0] == pytest.approx(0.01)
    assert rates[-1] < 1e-5
    assert np.all(np.diff(rates) <= 0)
    assert np.all(constant == np.float32(1e-3))


def test_smoothed_targets_sum_to_one() -> None:
    # Execute
    targets = smoothed_targets(np.array([0, 2]), num_classes=4, smoothing=0.2)
    # Assert
    assert np.allclose(targets.sum(axis=1), 1.0)
    assert targets[0, 0] == pytest.approx(0.85)
    assert targets[0, 1] == pytest.approx(0.05)


def test_predict_proba_applies_standardisation() -> None:
    # Prepare
    weights = HeadWeights(
        weight=np.array([[1.0, -1.0]], dtype=np.float32),
        bias=np.zeros(2, dtype=np.float32),
        mean=np.array([10.0], dtype=np.float32),
        scale=np.array([0.5], dtype=np.float32),
    )
    # Execute
    probs = predict_proba(weights, np.array([[12.0], [10.0]], dtype=np.float32))
    # Assert: x = (12-10)*0.5 = 1 -> logits (1, -1)
    assert probs[0, 0] == pytest.approx(1 / (1 + np.exp(-2)), rel=1e-6)
    assert probs[1].tolist() == pytest.approx([0.5, 0.5])


def test_feature_stats_keeps_constant_features_finite() -> None:
    # Prepare
    features = np.array([[1.0, 5.0], [3.0, 5.0]], dtype=np.float32)
    # Execute
    mean, scale = feature_stats(features)
    # Assert
    assert mean.tolist() == [2.0, 5.0]
    assert scale.tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (np.zeros((0, 3), np.float32), np.zeros(0, np.int64), "empty"),
        (np.zeros((2, 3), np.float32), np.array([0, 5]), "label 5 at position 1"),
        (np.zeros((2, 3), np.float32), np.array([0]), "labels must be"),
        (np.array([[0, 1], [np.nan, 0]], np.float32), np.array([0, 1]), "example 1"),
        (np.zeros(3, np.float32), np.array([0, 1, 1]), "features must be"),
    ],
)
def test_train_head_rejects_bad_inputs(
    features: np.ndarray, labels: np.ndarray, message: str
) -> None:
    # Execute / Assert
    with pytest.raises(HeadTrainingError, match=message):
        train_head(features, labels, num_classes=3, hp=HeadHyperParams(epochs=1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"batch_size": 0}, "batch_size"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"min_steps": -1}, "min_steps"),
    ],
)
def test_head_hyper_params_reject_bad_values(kwargs: dict[str, float], message: str) -> None:
    # Execute / Assert
    with pytest.raises(HeadTrainingError, match=message):
        HeadHyperParams(**kwargs)  # type: ignore[arg-type]


def test_num_epochs_shrinks_for_large_sets_to_respect_max_steps() -> None:
    # Prepare
    hp = HeadHyperParams(epochs=10, batch_size=64, min_steps=750, max_steps=3000)
    # Execute / Assert: 59,000 examples = 922 steps per epoch -> 3 epochs; 5,000 keeps 10;
    # 300,000 (4,688 steps per epoch) still trains one whole epoch.
    assert num_epochs(59_000, hp) == 3
    assert num_epochs(5_000, hp) == 10
    assert num_epochs(300_000, hp) == 1
    assert num_epochs(59_000, replace(hp, max_steps=0)) == 10


def test_max_steps_below_min_steps_is_named() -> None:
    with pytest.raises(HeadTrainingError, match="max_steps"):
        HeadHyperParams(min_steps=750, max_steps=500)


def test_the_train_accuracy_is_the_accuracy_of_the_head_on_its_raw_features() -> None:
    # Prepare: features far from standardised, so a missed standardisation would show
    from plada.head import accuracy

    rng = np.random.default_rng(5)
    features = (rng.normal(3.0, 4.0, (300, 12)) + np.arange(12)).astype(np.float32)
    labels = (features[:, 0] + rng.normal(0, 2, 300) > 3).astype(np.int64)
    # Execute
    result = train_head(features, labels, num_classes=2, hp=HeadHyperParams(epochs=2))
    # Assert
    assert result.train_accuracy == accuracy(result.weights, features, labels)
    assert 0.5 < result.train_accuracy < 1.0


def test_the_in_place_adamw_step_is_bit_for_bit_the_textbook_one() -> None:
    # Prepare: the formula as PyTorch / ONNX Runtime write it, with temporaries
    from plada.head import ADAM_BETA1, ADAM_BETA2, ADAM_EPS, _AdamW, adam_bias_corrections

    rng = np.random.default_rng(9)
    p = rng.normal(size=(40, 5)).astype(np.float32)
    ref_p, ref_m, ref_v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    optimizer = _AdamW([p], weight_decay=0.01)
    b1, b2, wd = np.float32(ADAM_BETA1), np.float32(ADAM_BETA2), np.float32(0.01)
    for step in range(1, 30):
        g = rng.normal(size=p.shape).astype(np.float32)
        lr = np.float32(1e-3 * step)
        bc1, bc2 = adam_bias_corrections(step)
        ref_p -= ref_p * lr * wd
        ref_m = b1 * ref_m + (np.float32(1.0) - b1) * g
        ref_v = b2 * ref_v + (np.float32(1.0) - b2) * g * g
        ref_p -= (lr * ref_m) / (bc1 * (np.sqrt(ref_v / bc2) + np.float32(ADAM_EPS)))
        # Execute
        optimizer.step([g], lr)
        # Assert
        np.testing.assert_array_equal(p, ref_p)
    np.testing.assert_array_equal(optimizer.m[0], ref_m)
    np.testing.assert_array_equal(optimizer.v[0], ref_v)


def test_a_consumed_feature_matrix_trains_the_same_head_in_place() -> None:
    # Prepare
    rng = np.random.default_rng(5)
    features = rng.normal(size=(300, 12)).astype(np.float32) * 3 + 1
    labels = rng.integers(0, 3, size=300)
    hp = HeadHyperParams(epochs=3)
    kept = features.copy()
    # Execute
    copied = train_head(features, labels, num_classes=3, hp=hp)
    consumed = train_head(features, labels, num_classes=3, hp=hp, consume=True)
    # Assert: the same head, and the matrix it was given is now the standardised one
    np.testing.assert_array_equal(copied.weights.weight, consumed.weights.weight)
    assert not np.array_equal(features, kept)
    np.testing.assert_allclose(features.mean(axis=0), 0.0, atol=1e-5)


def test_the_weights_alone_are_the_head_train_head_trains() -> None:
    # Prepare: the builder scores heads with train_head_weights (no train accuracy); the agent
    # installs train_head's: one flat buffer for weight and bias must give both bit for bit
    features, labels = _blobs(400, 24, 5, seed=8)
    hp = HeadHyperParams(epochs=4, seed=3)
    # Execute
    full = train_head(features, labels, num_classes=5, hp=hp)
    alone = train_head_weights(features.copy(), labels, num_classes=5, hp=hp, consume=True)
    # Assert
    for name in ("weight", "bias", "mean", "scale"):
        np.testing.assert_array_equal(getattr(alone, name), getattr(full.weights, name))
    assert alone.weight.flags.c_contiguous and alone.bias.flags.c_contiguous


def test_one_adamw_pass_over_weight_and_bias_is_two_passes_bit_for_bit() -> None:
    # Prepare: the textbook optimiser over two arrays, and the same values as one flat buffer
    from plada.head import _AdamW

    rng = np.random.default_rng(4)
    weight = rng.normal(size=(30, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    flat = np.concatenate([weight.ravel(), bias])
    apart = _AdamW([weight, bias], weight_decay=0.01)
    together = _AdamW([flat], weight_decay=0.01)
    for step in range(1, 20):
        g_weight = rng.normal(size=weight.shape).astype(np.float32)
        g_bias = rng.normal(size=bias.shape).astype(np.float32)
        lr = np.float32(1e-3 * step)
        # Execute
        apart.step([g_weight, g_bias], lr)
        together.step([np.concatenate([g_weight.ravel(), g_bias])], lr)
        # Assert
        np.testing.assert_array_equal(flat, np.concatenate([weight.ravel(), bias]))
