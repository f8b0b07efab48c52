"""The reference head trainer (NumPy): a linear softmax classifier over frozen encoder features.

Builder and agent both run this math. The builder's device simulation calls `train_head` directly;
the agent's other backends (an ONNX train-step graph, the ONNX Runtime training API) reproduce it
step for step, so every backend must take its batches from `batch_schedule`, its learning rates from
`learning_rate_schedule`, its targets from `smoothed_targets` and its standardisation from
`feature_stats` and its starting weights from `initial_weights`. The weights start small and random
(seeded), not at zero: from zero every prediction is uniform, and a class drawn exactly B/C times in
a batch then has a bias gradient that is zero in exact arithmetic but +-1e-8 of rounding noise,
which Adam's first step (a sign step) turns into a +-lr move that differs per runtime.

Optimiser: AdamW exactly as PyTorch defines it (decoupled decay applied to weight and bias):
    p <- p - lr * wd * p
    m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
    p <- p - lr * m / ((1 - b1^t) * (sqrt(v / (1 - b2^t)) + eps))
Loss: mean over the batch of the cross-entropy against label-smoothed one-hot targets.
Everything is float32 so the ONNX backends can match it to ~1e-6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np

from plada.errors import HeadTrainingError

ADAM_BETA1 = 0.9
ADAM_BETA2 = 0.999
ADAM_EPS = 1e-8
_MIN_STD = 1e-6
_INIT_STD = 0.01


@dataclass(frozen=True)
class HeadHyperParams:
    """Hyper-parameters shared by every head-training backend (numpy, ort-graph, ort-training)."""

    # Defaults measured on lite0-64-int8 features of the three default targets at the device's
    # scale (5,000 examples): test accuracy is flat within +-0.3 points over epochs 10-30,
    # batch 64-128, lr 1e-3 (2e-3 equal, 1e-2 -1.5 points), weight decay 0-5e-2 (no effect);
    # label smoothing 0.1 cost 3 points. 10 epochs of batch 64 = 790 steps for 5,000 examples.
    epochs: int = 10
    learning_rate: float = 1e-3  # AdamW peak learning rate
    weight_decay: float = 1e-4
    batch_size: int = 64
    class_balanced: bool = True
    label_smoothing: float = 0.0
    seed: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"
    # Small selections get more epochs, up to this many steps in all: 10 epochs of 300 examples
    # would be 50 Adam steps of at most lr each, far from converged (5,000 examples: 790 steps).
    min_steps: int = 750
    # Large selections get fewer epochs, whole ones, at least one: 10 epochs of the 59,000 images a
    # 32 KiB fashion payload keeps are 9,300 steps; 3 epochs (2,800 steps) measured the same
    # device accuracy (79.5 vs 79.4 %) in 2.8 s instead of 7.5 s. It bounds a device's training
    # time whatever the payload holds. 0 = no cap.
    max_steps: int = 3000

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise HeadTrainingError(f"epochs must be >= 1, got {self.epochs}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise HeadTrainingError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise HeadTrainingError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.batch_size < 1:
            raise HeadTrainingError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise HeadTrainingError(
                f"label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        if self.min_steps < 0:
            raise HeadTrainingError(f"min_steps must be >= 0, got {self.min_steps}")
        if self.max_steps < 0:
            raise HeadTrainingError(f"max_steps must be >= 0 (0 = no cap), got {self.max_steps}")
        if self.max_steps and self.max_steps < self.min_steps:
            raise HeadTrainingError(
                f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps}) or 0"
            )
        if self.schedule not in ("cosine", "constant"):
            raise HeadTrainingError(
                f"schedule must be 'cosine' or 'constant', got {self.schedule!r}"
            )

    def to_dict(self) -> dict[str, int | float | bool | str]:
        """Plain dict, e.g. for model metadata."""
        return dict(asdict(self))


@dataclass(frozen=True)
class HeadWeights:
    """A trained head: probabilities = softmax(((features - mean) * scale) @ weight + bias)."""

    weight: np.ndarray  # (D, C) float32
    bias: np.ndarray  # (C,) float32
    mean: np.ndarray  # (D,) float32, feature standardisation from the training features
    scale: np.ndarray  # (D,) float32, 1 / std (1 where a feature is constant)

    @property
    def feature_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.weight.shape[1])


@dataclass(frozen=True)
class HeadTrainResult:
    weights: HeadWeights
    losses: np.ndarray  # (num_epochs(N, hp),) float32, mean batch loss per epoch
    train_accuracy: float  # on the (unshuffled) training set, 0..1
    step_losses: np.ndarray = field(repr=False)  # (steps,) float32, the loss of every step


def validate_training_set(features: np.ndarray, labels: np.ndarray, *, num_classes: int) -> None:
    """Raise HeadTrainingError naming the problem if (features, labels) cannot be trained on."""
    if num_classes < 2:
        raise HeadTrainingError(f"num_classes must be >= 2, got {num_classes}")
    if features.ndim != 2:
        raise HeadTrainingError(f"features must be (N, D), got shape {features.shape}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise HeadTrainingError(
            f"labels must be (N,) with N={features.shape[0]}, got shape {labels.shape}"
        )
    if features.shape[0] == 0:
        raise HeadTrainingError("empty training set (0 examples)")
    if not np.issubdtype(labels.dtype, np.integer):
        raise HeadTrainingError(f"labels must be integers, got {labels.dtype}")
    if labels.min() < 0 or labels.max() >= num_classes:
        bad = int(np.flatnonzero((labels < 0) | (labels >= num_classes))[0])
        raise HeadTrainingError(
            f"label {int(labels[bad])} at position {bad} is outside 0..{num_classes - 1}"
        )
    if not np.all(np.isfinite(features)):
        bad = int(np.flatnonzero(~np.isfinite(features).all(axis=1))[0])
        raise HeadTrainingError(f"features of example {bad} are not finite")


_STATS_ROWS = 1024  # rows per chunk of feature_stats' variance pass (5 MB at D = 1280)


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardisation from the training features: (mean (D,), scale = 1/std (D,)), float32.

    Sums accumulate in float64 without a float64 copy of the (N, D) matrix (memory and time on
    a device: 5,000 x 1280 would be a 51 MB temporary).
    """
    mean = features.mean(axis=0, dtype=np.float64).astype(np.float32)
    # squared deviations summed a chunk of rows at a time: a whole (N, D) temporary was 102 MB
    # for a 20,000-image payload, most of the gap to a device's 300 MB budget
    total = np.zeros(features.shape[1], dtype=np.float64)
    for start in range(0, features.shape[0], _STATS_ROWS):
        centred = np.subtract(features[start : start + _STATS_ROWS], mean, dtype=np.float32)
        np.square(centred, out=centred)
        total += centred.sum(axis=0, dtype=np.float64)
    std = np.sqrt(total / features.shape[0])
    scale = np.where(std > _MIN_STD, 1.0 / np.maximum(std, _MIN_STD), 1.0)
    return mean, scale.astype(np.float32)


def standardize(
    features: np.ndarray, mean: np.ndarray, scale: np.ndarray, *, in_place: bool = False
) -> np.ndarray:
    """(N, D) -> (N, D) float32, (features - mean) * scale. `in_place` overwrites `features`
    when it is a writable float32 array (no second (N, D) copy), else makes one."""
    if in_place and features.dtype == np.float32 and features.flags.writeable:
        np.subtract(features, mean, out=features)
        features *= scale
        return features
    out: np.ndarray = np.subtract(features, mean, dtype=np.float32)
    out *= scale
    return out


def smoothed_targets(labels: np.ndarray, *, num_classes: int, smoothing: float) -> np.ndarray:
    """(N,) int -> (N, C) float32 targets: (1 - s) * one_hot + s / C."""
    targets = np.full((labels.shape[0], num_classes), smoothing / num_classes, dtype=np.float32)
    targets[np.arange(labels.shape[0]), labels] += np.float32(1.0 - smoothing)
    return targets


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(num_examples / batch_size))


def num_epochs(num_examples: int, hp: HeadHyperParams) -> int:
    """hp.epochs, raised so that the run has at least hp.min_steps steps, then lowered (whole
    epochs, at least one) so that it has at most hp.max_steps."""
    per_epoch = steps_per_epoch(num_examples, hp.batch_size)
    epochs = max(hp.epochs, math.ceil(hp.min_steps / per_epoch))
    if hp.max_steps:
        epochs = min(epochs, max(1, hp.max_steps // per_epoch))
    return epochs


def batch_schedule(
    labels: np.ndarray, *, num_classes: int, hp: HeadHyperParams
) -> list[np.ndarray]:
    """Every step's batch (row indices into the training set), all epochs in order.

    `num_epochs(N, hp)` epochs; each draws N examples: a permutation, or with class_balanced a
    draw with replacement where every class present is equally likely. The last batch of an
    epoch may be smaller.
    One seeded generator, so every backend sees the same batches.
    """
    n = int(labels.shape[0])
    rng = np.random.default_rng(hp.seed)
    probs: np.ndarray | None = None
    if hp.class_balanced:
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        present = int(np.count_nonzero(counts))
        probs = 1.0 / (present * counts[labels])  # (N,) sums to 1
        probs /= probs.sum()
    batches: list[np.ndarray] = []
    for _ in range(num_epochs(n, hp)):
        if probs is None:
            order = rng.permutation(n)
        else:
            order = rng.choice(n, size=n, replace=True, p=probs)
        batches.extend(
            np.ascontiguousarray(order[start : start + hp.batch_size], dtype=np.int64)
            for start in range(0, n, hp.batch_size)
        )
    return batches


def learning_rate_schedule(num_steps: int, hp: HeadHyperParams) -> np.ndarray:
    """(num_steps,) float32 learning rate per step: constant, or cosine from lr down to 0."""
    if hp.schedule == "constant" or num_steps <= 1:
        return np.full(num_steps, hp.learning_rate, dtype=np.float32)
    t = np.arange(num_steps, dtype=np.float64)
    return (hp.learning_rate * 0.5 * (1.0 + np.cos(np.pi * t / num_steps))).astype(np.float32)


def epoch_means(step_losses: np.ndarray, *, num_epochs: int) -> np.ndarray:
    """Per-step losses -> (epochs,) mean loss per epoch (steps are split evenly by epoch)."""
    per_epoch = step_losses.reshape(num_epochs, -1)
    out: np.ndarray = per_epoch.mean(axis=1).astype(np.float32)
    return out


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    out: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def predict_proba(weights: HeadWeights, features: np.ndarray) -> np.ndarray:
    """(N, D) raw encoder features -> (N, C) float32 class probabilities."""
    if features.ndim != 2 or features.shape[1] != weights.feature_dim:
        raise HeadTrainingError(
            f"features must be (N, {weights.feature_dim}), got shape {features.shape}"
        )
    x = standardize(features, weights.mean, weights.scale)
    return softmax(x @ weights.weight + weights.bias).astype(np.float32)


def accuracy(weights: HeadWeights, features: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of a head, 0..1."""
    if labels.shape[0] == 0:
        return 0.0
    pred = predict_proba(weights, features).argmax(axis=1)
    return float(np.mean(pred == labels))


def _standardized_accuracy(weights: HeadWeights, x: np.ndarray, labels: np.ndarray) -> float:
    """`accuracy` for features already standardised with the head's mean and scale."""
    if labels.shape[0] == 0:
        return 0.0
    pred = softmax(x @ weights.weight + weights.bias).astype(np.float32).argmax(axis=1)
    return float(np.mean(pred == labels))


class _AdamW:
    """PyTorch-style AdamW over a list of float32 arrays (updated in place)."""

    def __init__(self, params: Sequence[np.ndarray], *, weight_decay: float) -> None:
        self.params = list(params)
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.wd = np.float32(weight_decay)
        self.t = 0

    def step(self, grads: Sequence[np.ndarray], lr: np.float32) -> None:
        # Same operation order as ONNX Runtime's AdamWOptimizer kernel in PyTorch mode (0).
        self.t += 1
        b1, b2 = np.float32(ADAM_BETA1), np.float32(ADAM_BETA2)
        bc1, bc2 = adam_bias_corrections(self.t)
        # In place, operation for operation the same float32 arithmetic as
        #   p -= p * lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g g
        #   p -= (lr m) / (bc1 (sqrt(v / bc2) + eps))
        # (the builder trains ~100 heads per task build; the temporaries were a third of a step)
        one_minus_b1, one_minus_b2 = np.float32(1.0) - b1, np.float32(1.0) - b2
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            tmp = np.multiply(p, lr)
            tmp *= self.wd
            p -= tmp
            np.multiply(m, b1, out=m)
            np.multiply(g, one_minus_b1, out=tmp)
            m += tmp
            np.multiply(v, b2, out=v)
            np.multiply(g, one_minus_b2, out=tmp)
            tmp *= g
            v += tmp
            np.divide(v, bc2, out=tmp)
            np.sqrt(tmp, out=tmp)
            tmp += np.float32(ADAM_EPS)
            np.multiply(bc1, tmp, out=tmp)
            np.divide(np.multiply(lr, m), tmp, out=tmp)
            p -= tmp


@dataclass(frozen=True)
class TrainingPlan:
    """Everything a backend needs to run the steps; identical for every backend."""

    x: np.ndarray  # (N, D) float32, standardised training features
    targets: np.ndarray  # (N, C) float32, label-smoothed one-hot
    batches: list[np.ndarray]  # one (B,) int64 row-index array per step
    rates: np.ndarray  # (steps,) float32 learning rate per step
    mean: np.ndarray  # (D,) float32
    scale: np.ndarray  # (D,) float32
    weight0: np.ndarray  # (D, C) float32 starting weight
    bias0: np.ndarray  # (C,) float32 starting bias
    num_classes: int
    hp: HeadHyperParams


def plan_training(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    hp: HeadHyperParams,
    consume: bool = False,
) -> TrainingPlan:
    """Validate the inputs and derive the shared standardisation, targets, batches and rates.
    `consume`: the caller hands `features` over, and they are standardised in place (a device
    applying a 20,000-image payload then holds one (N, D) matrix, not two)."""
    labels = np.asarray(labels)
    validate_training_set(features, labels, num_classes=num_classes)
    labels = labels.astype(np.int64)
    mean, scale = feature_stats(features)
    batches = batch_schedule(labels, num_classes=num_classes, hp=hp)
    weight0, bias0 = initial_weights(features.shape[1], num_classes, seed=hp.seed)
    return TrainingPlan(
        x=standardize(features, mean, scale, in_place=consume),
        targets=smoothed_targets(labels, num_classes=num_classes, smoothing=hp.label_smoothing),
        batches=batches,
        rates=learning_rate_schedule(len(batches), hp),
        mean=mean,
        scale=scale,
        weight0=weight0,
        bias0=bias0,
        num_classes=num_classes,
        hp=hp,
    )


def initial_weights(dim: int, num_classes: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Starting (weight (D, C), bias (C,)): weight ~ N(0, (0.01)^2), bias 0, float32, seeded."""
    rng = np.random.default_rng([seed, 1])  # a stream apart from the batch schedule's
    weight = (rng.standard_normal((dim, num_classes)) * _INIT_STD).astype(np.float32)
    return weight, np.zeros(num_classes, dtype=np.float32)


def finish_training(
    plan: TrainingPlan,
    *,
    weight: np.ndarray,
    bias: np.ndarray,
    step_losses: np.ndarray,
    labels: np.ndarray,
) -> HeadTrainResult:
    """Package a backend's final parameters and per-step losses as a HeadTrainResult. The train
    accuracy is read from the plan's standardised features: the same numbers as `accuracy` on
    the raw ones, without another (N, D) float32 copy (98 MB for 20,000 kept images, on a
    device that holds the raw and the standardised matrix already)."""
    weights = HeadWeights(
        weight=np.ascontiguousarray(weight, dtype=np.float32),
        bias=np.ascontiguousarray(bias, dtype=np.float32),
        mean=plan.mean,
        scale=plan.scale,
    )
    step_losses = np.asarray(step_losses, dtype=np.float32)
    return HeadTrainResult(
        weights=weights,
        losses=epoch_means(step_losses, num_epochs=num_epochs(plan.x.shape[0], plan.hp)),
        train_accuracy=_standardized_accuracy(weights, plan.x, np.asarray(labels)),
        step_losses=step_losses,
    )


def adam_bias_corrections(step: int) -> tuple[np.float32, np.float32]:
    """(1 - b1^t, 1 - b2^t) as ONNX Runtime computes them (float32 betas, double pow)."""
    b1 = float(np.float32(ADAM_BETA1))
    b2 = float(np.float32(ADAM_BETA2))
    return np.float32(1.0) - np.float32(b1**step), np.float32(1.0) - np.float32(b2**step)


def train_head(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    hp: HeadHyperParams,
    consume: bool = False,
) -> HeadTrainResult:
    """Train a linear softmax head on (N, D) features and (N,) labels; deterministic for hp.seed.
    `consume`: `features` may be overwritten (plan_training)."""
    plan = plan_training(features, labels, num_classes=num_classes, hp=hp, consume=consume)
    weight, bias, step_losses = _optimise(plan)
    return finish_training(
        plan,
        weight=weight,
        bias=bias,
        step_losses=step_losses,
        labels=labels,
    )


def train_head_weights(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    hp: HeadHyperParams,
    consume: bool = False,
) -> HeadWeights:
    """`train_head(...).weights` without the train accuracy and loss curve: the builder trains
    hundreds of heads per task only to score them, and the accuracy is one more pass over (N, D)."""
    plan = plan_training(features, labels, num_classes=num_classes, hp=hp, consume=consume)
    weight, bias, _ = _optimise(plan)
    return HeadWeights(weight=weight, bias=bias, mean=plan.mean, scale=plan.scale)


def _optimise(plan: TrainingPlan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(weight (D, C), bias (C,), per-step losses (steps,)) after every batch of the plan.

    Weight and bias are views of one flat buffer, and their gradients of another, so AdamW updates
    both in one pass of element-wise operations: per element the same float32 arithmetic as one
    pass per array, with half the NumPy calls per step."""
    d, c = plan.weight0.shape
    params = np.concatenate([plan.weight0.ravel(), plan.bias0])  # (D*C + C,)
    weight, bias = params[: d * c].reshape(d, c), params[d * c :]
    grads = np.empty_like(params)
    grad_weight, grad_bias = grads[: d * c].reshape(d, c), grads[d * c :]
    optimizer = _AdamW([params], weight_decay=plan.hp.weight_decay)
    step_losses = np.empty(len(plan.batches), dtype=np.float32)
    for step, rows in enumerate(plan.batches):
        xb, tb = plan.x[rows], plan.targets[rows]  # (B, D), (B, C)
        logp = log_softmax(xb @ weight + bias)  # (B, C)
        step_losses[step] = -(tb * logp).sum(axis=1).mean()
        grad_logits = (np.exp(logp) - tb) / np.float32(rows.shape[0])  # (B, C)
        np.matmul(xb.T, grad_logits, out=grad_weight)
        np.sum(grad_logits, axis=0, out=grad_bias)
        optimizer.step([grads], plan.rates[step])
    return weight.copy(), bias.copy(), step_losses
