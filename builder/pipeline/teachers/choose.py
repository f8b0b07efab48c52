"""Choose the teacher on k-fold splits of the target's train split: which encoders' features
(each alone, or all concatenated), which model (softmax regression or a small MLP), and which
augmentation of the train images (none, shifts, mirror and shifts).

The search is greedy, one question at a time on the same folds, and a step only replaces the
teacher so far when its mean held-out balanced accuracy is higher: the features first (linear
probes, the L2 chosen per candidate), then the MLP on the best features, then augmentation of the
best of those, with the hyperparameters already chosen for it (augmented copies multiply the
training rows, so a second hyperparameter search would multiply the cost too). Every candidate's
fold scores are kept for the report. Hyperparameters (L2, or
weight decay and epochs) are chosen on the folds too, and the chosen candidate keeps them when it
is refitted, on the whole train split or on a validation fold's training part (TeacherRecipe)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from builder.errors import BuilderError
from builder.pipeline.teacher import (
    TeacherConfig,
    best_l2,
    fit_teacher,
    l2_path_scores,
    stratified_folds,
)
from builder.pipeline.teachers.augment import POLICIES, policy_rows
from builder.pipeline.teachers.concat import BlockScaler, concat_name
from builder.pipeline.teachers.mlp import MlpConfig, train_mlp
from builder.pipeline.teachers.model import TeacherModel


@dataclass(frozen=True)
class TeacherData:
    """The train split under every teacher encoder, and its augmented copies (if any)."""

    encoders: tuple[str, ...]
    train: tuple[np.ndarray, ...]  # per encoder (n, D_e)
    labels: np.ndarray  # (n,)
    num_classes: int
    augmented: tuple[np.ndarray, ...] | None = None  # per encoder (m, D_e)
    aug_ops: np.ndarray | None = None  # (m,) the op that made each copy
    aug_source: np.ndarray | None = None  # (m,) its train image

    def __post_init__(self) -> None:
        if not self.encoders or len(self.train) != len(self.encoders):
            raise BuilderError("teacher data needs the train features of every teacher encoder")
        if any(t.shape[0] != self.labels.shape[0] for t in self.train):
            raise BuilderError("teacher train features and labels disagree on the number of images")
        if self.augmented is not None and (
            self.aug_ops is None
            or self.aug_source is None
            or len(self.augmented) != len(self.encoders)
            or any(a.shape[0] != self.aug_ops.shape[0] for a in self.augmented)
        ):
            raise BuilderError("augmented features need one block per encoder, ops and sources")


@dataclass(frozen=True)
class TeacherSpec:
    """One teacher candidate; hyperparameters are filled in by its k-fold scoring."""

    encoders: tuple[int, ...]  # indices into TeacherData.encoders
    kind: str  # "softmax-regression" | "mlp"
    augment: str | None = None  # a policy of teachers.augment, or none
    l2: float | None = None
    weight_decay: float | None = None
    epochs: int | None = None

    def name(self, encoders: Sequence[str]) -> str:
        feats = concat_name([encoders[i] for i in self.encoders])
        return f"{self.kind} on {feats}" + (f", augment {self.augment}" if self.augment else "")

    def hyper(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {}
        for key in ("l2", "weight_decay", "epochs"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class ScoredSpec:
    spec: TeacherSpec
    fold_scores: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def std(self) -> float:
        return float(np.std(self.fold_scores))


@dataclass(frozen=True)
class ChoiceConfig:
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    mlp: MlpConfig = field(default_factory=MlpConfig)
    concat: bool = True
    mlp_candidate: bool = True


class TeacherRecipe:
    """The chosen candidate as a function of which train images it may learn from."""

    def __init__(self, data: TeacherData, spec: TeacherSpec, config: ChoiceConfig) -> None:
        self.spec = spec
        self.config = config
        self.encoders = tuple(data.encoders[i] for i in spec.encoders)
        self.scaler = BlockScaler.fit([data.train[i] for i in spec.encoders])
        self.train = self.features([data.train[i] for i in spec.encoders])
        self.labels = data.labels
        self.num_classes = data.num_classes
        self.extra: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if spec.augment is not None:
            if data.augmented is None or data.aug_ops is None or data.aug_source is None:
                raise BuilderError(f"augmentation {spec.augment!r} asked without augmented data")
            rows = policy_rows(data.aug_ops, spec.augment)
            source = data.aug_source[rows]
            self.extra = (
                self.features([data.augmented[i][rows] for i in spec.encoders]),
                data.labels[source],
                source,
            )

    @property
    def kind(self) -> str:
        return self.spec.kind + (f"+augment:{self.spec.augment}" if self.spec.augment else "")

    @property
    def concatenated(self) -> bool:
        return len(self.encoders) > 1

    def features(self, blocks: Sequence[np.ndarray]) -> np.ndarray:
        """The teacher's feature space for images embedded by its encoders (in their order):
        one encoder's features as they are, several concatenated by the train split's scaler."""
        if not self.concatenated:
            return np.asarray(blocks[0])
        return self.scaler.apply(blocks)

    def fit(self, train_idx: np.ndarray | None = None) -> TeacherModel:
        """Fit on these train images (default all) and their augmented copies."""
        idx = np.arange(len(self.labels)) if train_idx is None else np.asarray(train_idx)
        x, y = self.train[idx], self.labels[idx]
        if self.extra is not None:
            keep = np.isin(self.extra[2], idx)
            x = np.concatenate([x, self.extra[0][keep]])
            y = np.concatenate([y, self.extra[1][keep]])
        return fit_spec(self.spec, x, y, num_classes=self.num_classes, config=self.config)


def fit_spec(
    spec: TeacherSpec, x: np.ndarray, y: np.ndarray, *, num_classes: int, config: ChoiceConfig
) -> TeacherModel:
    if spec.kind == "softmax-regression":
        return fit_teacher(x, y, num_classes=num_classes, config=config.teacher, l2=spec.l2)
    if spec.kind == "mlp":
        if spec.weight_decay is None or spec.epochs is None:
            raise BuilderError("an MLP teacher needs its weight decay and epochs chosen first")
        model, _ = train_mlp(
            x, y, num_classes=num_classes, weight_decay=spec.weight_decay,
            epochs=spec.epochs, config=config.mlp,
        )  # fmt: skip
        return model
    raise BuilderError(f"unknown teacher kind {spec.kind!r}")


def _score_linear(
    recipe: TeacherRecipe, folds: list[np.ndarray], config: ChoiceConfig
) -> ScoredSpec:
    spec = recipe.spec
    teacher = config.teacher if spec.l2 is None else replace(config.teacher, l2_grid=(spec.l2,))
    accs = l2_path_scores(
        recipe.train, recipe.labels, num_classes=recipe.num_classes, config=teacher,
        folds=folds, extra=recipe.extra,
    )  # fmt: skip
    l2 = best_l2(accs)
    return ScoredSpec(replace(recipe.spec, l2=l2), accs[l2])


def _score_mlp(recipe: TeacherRecipe, folds: list[np.ndarray], config: ChoiceConfig) -> ScoredSpec:
    """Every weight decay trained for max_epochs on each fold; the (decay, epochs) with the best
    mean held-out curve wins (ties: fewer epochs, then the stronger decay)."""
    mlp, spec = config.mlp, recipe.spec
    if spec.weight_decay is not None and spec.epochs is not None:
        mlp = replace(mlp, weight_decays=(spec.weight_decay,), max_epochs=spec.epochs)
    curves: dict[float, list[list[float]]] = {wd: [] for wd in mlp.weight_decays}
    for val_idx in folds:
        tr = np.setdiff1d(np.arange(len(recipe.labels)), val_idx)
        x, y = recipe.train[tr], recipe.labels[tr]
        if recipe.extra is not None:
            keep = np.isin(recipe.extra[2], tr)
            x = np.concatenate([x, recipe.extra[0][keep]])
            y = np.concatenate([y, recipe.extra[1][keep]])
        for wd in mlp.weight_decays:
            _, curve = train_mlp(
                x, y, num_classes=recipe.num_classes, weight_decay=wd, epochs=mlp.max_epochs,
                config=mlp, evaluate=(recipe.train[val_idx], recipe.labels[val_idx]),
            )  # fmt: skip
            curves[wd].append(curve)
    options = [
        (float(np.mean([c[t] for c in curves[wd]])), -t, wd, t)
        for wd in sorted(mlp.weight_decays, reverse=True)
        for t in range(len(curves[wd][0]))
    ]
    best = max(o[0] for o in options)
    _, _, wd, t = max((o for o in options if o[0] >= best - 1e-9), key=lambda o: (o[1], o[2]))
    spec = replace(recipe.spec, weight_decay=wd, epochs=(t + 1) * mlp.eval_every)
    return ScoredSpec(spec, [c[t] for c in curves[wd]])


def score_spec(
    data: TeacherData, spec: TeacherSpec, folds: list[np.ndarray], config: ChoiceConfig
) -> ScoredSpec:
    recipe = TeacherRecipe(data, spec, config)
    if spec.kind == "softmax-regression":
        return _score_linear(recipe, folds, config)
    if spec.kind == "mlp":
        return _score_mlp(recipe, folds, config)
    raise BuilderError(f"unknown teacher kind {spec.kind!r}")


@dataclass(frozen=True)
class TeacherSearch:
    """Every candidate scored, in the order tried, and the index of the chosen one."""

    data: TeacherData
    scored: list[ScoredSpec]
    chosen: int
    config: ChoiceConfig
    num_folds: int

    @property
    def best(self) -> ScoredSpec:
        return self.scored[self.chosen]

    def recipe(self) -> TeacherRecipe:
        return TeacherRecipe(self.data, self.best.spec, self.config)


def search_teacher(data: TeacherData, config: ChoiceConfig | None = None) -> TeacherSearch:
    """The greedy search of the module docstring on stratified folds of the train split."""
    config = config or ChoiceConfig()
    labels = data.labels
    smallest = int(np.bincount(labels, minlength=data.num_classes)[np.unique(labels)].min())
    num_folds = max(2, min(config.teacher.num_folds, smallest))
    if smallest < 2:
        raise BuilderError("the teacher's k-fold choice needs at least 2 train images per class")
    folds = stratified_folds(labels, num_folds=num_folds, seed=config.teacher.seed)
    linear = "softmax-regression"
    sets: list[tuple[int, ...]] = [(i,) for i in range(len(data.encoders))]
    if config.concat and len(sets) > 1:
        sets.append(tuple(range(len(data.encoders))))
    scored = [score_spec(data, TeacherSpec(s, linear), folds, config) for s in sets]
    best = max(range(len(scored)), key=lambda i: (scored[i].mean, -i))

    def attempt(spec: TeacherSpec) -> None:
        nonlocal best
        scored.append(score_spec(data, spec, folds, config))
        if scored[-1].mean > scored[best].mean + 1e-9:
            best = len(scored) - 1

    if config.mlp_candidate:
        attempt(TeacherSpec(scored[best].spec.encoders, "mlp"))
    if data.augmented is not None:
        base = scored[best].spec
        for policy in POLICIES:
            attempt(replace(base, augment=policy))
    return TeacherSearch(data, scored, best, config, num_folds)
