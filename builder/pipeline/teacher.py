"""The teacher: a softmax regression over frozen, standardised encoder features.

Trained with L-BFGS on mean cross-entropy + L2 (full batch: a target train split is hundreds
to a few thousand images). Classes may be weighted inversely to their frequency so an imbalanced
task (clipart) does not teach the teacher to ignore its rare classes. The L2 strength is picked by
stratified k-fold on the train split when a grid is given. No encoder fine-tuning: the features
stay frozen.

Also here: the stratified hold-out and k-fold splits of a train split that the rest of the builder
uses to validate without touching the test split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize  # type: ignore[import-untyped]

from builder.errors import BuilderError
from builder.features.stream import row_chunks

DEFAULT_L2_GRID = (1e-3, 1e-2, 1e-1, 1.0)


@dataclass(frozen=True)
class TeacherConfig:
    l2: float = 1e-2  # per-sample L2 on the weights (standardised features)
    l2_grid: tuple[float, ...] = DEFAULT_L2_GRID  # empty: use l2 as is
    class_balanced: bool = True
    max_iter: int = 200
    num_folds: int = 3
    seed: int = 0


@dataclass(frozen=True)
class Teacher:
    weight: np.ndarray  # (D, C) float64
    bias: np.ndarray  # (C,)
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,) 1/std
    l2: float

    @property
    def kind(self) -> str:
        return "softmax-regression"

    @property
    def num_classes(self) -> int:
        return int(self.bias.shape[0])

    def logits(self, features: np.ndarray, *, batch_size: int = 8192) -> np.ndarray:
        """(N, D) -> (N, C) float32, batched so an 80k x 1280 corpus stays small in memory."""
        out = np.empty((features.shape[0], self.num_classes), dtype=np.float32)
        w = (self.weight * self.scale[:, None]).astype(np.float32)  # fold standardisation in
        b = (self.bias - (self.mean * self.scale) @ self.weight).astype(np.float32)
        for start, chunk in row_chunks(features, batch_size):  # pages released as it goes
            out[start : start + batch_size] = chunk @ w + b
        return out

    def predict(self, features: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.argmax(self.logits(features), axis=1).astype(np.int64)
        return out


def stratified_folds(labels: np.ndarray, *, num_folds: int, seed: int) -> list[np.ndarray]:
    """Split indices into num_folds disjoint validation folds, each class spread evenly."""
    if num_folds < 2:
        raise BuilderError(f"num_folds must be >= 2, got {num_folds}")
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(num_folds)]
    offset = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        for j, idx in enumerate(members):
            folds[(offset + j) % num_folds].append(int(idx))
        offset += len(members)  # rotate so small classes do not all land in fold 0
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]


def holdout_split(
    labels: np.ndarray, *, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx), stratified; every class keeps at least one train image."""
    if not 0.0 < val_fraction < 1.0:
        raise BuilderError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(len(members) - 1, round(len(members) * val_fraction))
        val.append(members[:n_val])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx).astype(np.int64)
    return train_idx, val_idx


def _standardise(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = 1.0 / np.maximum(x.std(axis=0), 1e-6)
    return (x - mean) * scale, mean, scale


def _fit_standardised(
    x: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    l2: float,
    config: TeacherConfig,
    init: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    n, d = x.shape
    x32 = x.astype(np.float32)
    onehot = np.zeros((n, num_classes), dtype=np.float32)
    onehot[np.arange(n), labels] = 1.0
    if config.class_balanced:
        counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
        per_class = np.where(counts > 0, n / (num_classes * np.maximum(counts, 1)), 0.0)
        sample_w = per_class[labels]
    else:
        sample_w = np.ones(n)
    sample_w32 = (sample_w / sample_w.sum()).astype(np.float32)

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        # float32 matmuls (the expensive part), float64 for the optimiser's bookkeeping.
        w = theta[: d * num_classes].reshape(d, num_classes).astype(np.float32)
        b = theta[d * num_classes :].astype(np.float32)
        z = x32 @ w + b  # (n, C)
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -float((sample_w32 * (onehot * logp).sum(axis=1)).sum(dtype=np.float64))
        loss += 0.5 * l2 * float((w.astype(np.float64) ** 2).sum())
        delta = (np.exp(logp) - onehot) * sample_w32[:, None]  # (n, C)
        grad_w = x32.T @ delta + np.float32(l2) * w
        grad = np.concatenate([grad_w.ravel(), delta.sum(axis=0)]).astype(np.float64)
        return loss, grad

    theta0 = np.zeros(d * num_classes + num_classes) if init is None else init
    result = minimize(
        loss_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": config.max_iter}
    )
    theta = result.x
    return theta[: d * num_classes].reshape(d, num_classes), theta[d * num_classes :]


def _fit_with_l2(
    features: np.ndarray, labels: np.ndarray, *, num_classes: int, l2: float, config: TeacherConfig
) -> Teacher:
    x, mean, scale = _standardise(features)
    weight, bias = _fit_standardised(x, labels, num_classes=num_classes, l2=l2, config=config)
    return Teacher(weight=weight, bias=bias, mean=mean, scale=scale, l2=l2)


def balanced_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean per-class recall over the classes present in labels."""
    recalls = [float(np.mean(pred[labels == c] == c)) for c in np.unique(labels)]
    return float(np.mean(recalls)) if recalls else 0.0


def l2_path_scores(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    config: TeacherConfig,
    folds: list[np.ndarray] | None = None,
    extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[float, list[float]]:
    """Balanced accuracy on each held-out fold for every L2 of the grid.

    Each fold walks the grid from strong to weak L2, warm-starting from the previous solution
    (a regularisation path): a few L-BFGS iterations per step instead of a cold start. `extra`
    is (features, labels, source index) of training-only rows (augmented copies of train images):
    a fold trains on the copies of its training images only, so no copy of a held-out image
    leaks into its own validation."""
    if folds is None:
        num_folds = max(2, min(config.num_folds, int(np.bincount(labels).min())))
        folds = stratified_folds(labels, num_folds=num_folds, seed=config.seed)
    grid = sorted(config.l2_grid, reverse=True)
    accs: dict[float, list[float]] = {l2: [] for l2 in grid}
    for val_idx in folds:
        tr = np.setdiff1d(np.arange(len(labels)), val_idx)
        x_tr, y_tr = np.asarray(features[tr]), labels[tr]
        if extra is not None:
            keep = ~np.isin(extra[2], val_idx)
            x_tr = np.concatenate([x_tr, extra[0][keep]])
            y_tr = np.concatenate([y_tr, extra[1][keep]])
        x, mean, scale = _standardise(x_tr)
        x_val = (np.asarray(features[val_idx], dtype=np.float64) - mean) * scale
        theta: np.ndarray | None = None
        for l2 in grid:
            w, b = _fit_standardised(
                x, y_tr, num_classes=num_classes, l2=l2, config=config, init=theta
            )
            theta = np.concatenate([w.ravel(), b])
            pred = np.argmax(x_val @ w + b, axis=1)
            accs[l2].append(balanced_accuracy(pred, labels[val_idx]))
    return accs


def best_l2(accs: dict[float, list[float]]) -> float:
    """The L2 with the best mean fold score (ties: the stronger L2)."""
    scores = [(float(np.mean(v)), l2) for l2, v in accs.items()]
    best = max(s for s, _ in scores)
    return max(l2 for s, l2 in scores if s >= best - 1e-9)


def choose_l2(
    features: np.ndarray, labels: np.ndarray, *, num_classes: int, config: TeacherConfig
) -> float:
    """The L2 strength with the best mean balanced k-fold accuracy (ties: the stronger L2)."""
    if len(config.l2_grid) == 0:
        return config.l2
    return best_l2(l2_path_scores(features, labels, num_classes=num_classes, config=config))


def fit_teacher(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    num_classes: int,
    config: TeacherConfig | None = None,
    l2: float | None = None,
) -> Teacher:
    """Train the teacher on (N, D) features; l2 overrides the k-fold choice when given."""
    config = config or TeacherConfig()
    labels = np.asarray(labels, dtype=np.int64)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise BuilderError(f"teacher features {features.shape} do not match labels {labels.shape}")
    present = np.unique(labels)
    if len(present) < 2:
        raise BuilderError("teacher needs at least two classes in its training data")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise BuilderError(f"teacher labels out of range 0..{num_classes - 1}")
    if l2 is None:
        l2 = choose_l2(features, labels, num_classes=num_classes, config=config)
    return _fit_with_l2(features, labels, num_classes=num_classes, l2=l2, config=config)


def teacher_accuracy(teacher: Teacher, features: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(teacher.predict(features) == labels))
