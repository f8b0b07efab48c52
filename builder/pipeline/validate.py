"""`--auto`: choose strategy, parameters and keep count on the train split only, never on test.

For every fold of a repeated stratified k-fold split of the target's train split, a fold teacher
is trained on the other folds and scores the whole reference corpus; each candidate (strategy,
params, keep) then selects from those scores, the device head of every validated device class is
trained on the selection's features in that class's encoder, and its balanced accuracy is
measured on the held-out fold's features in the same encoder. With one class that accuracy is
the candidate's score; with several, the fleet objective (builder.pipeline.objective) turns the
classes' ratios to their own validated oracles into one score per split.

Steadier choice (issue 16): after the first round (`repeats` k-fold splits for every candidate)
the `finalists` best candidates are validated on `finalist_repeats` more k-fold splits with other
fold seeds, and the choice is made among them on all their splits. A single k-fold split of a
small train set moves a candidate's mean by points with the fold seed; more splits where the
choice is close shrink that swing at a fraction of the cost of repeating every candidate.

The candidate with the best mean wins, except that candidates within the tie tolerance of the
best (by default its standard error over splits, at most 2 points) are broken in favour of the
more robust strategy, then the larger keep: the prototype measured that tiny validation sets make
several strategies tie and single images swing the score by points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from builder.errors import BuilderError
from builder.features.sources import TaskFeatures
from builder.pipeline.candidates import Candidate, CandidateSpec
from builder.pipeline.label import Labelling, label_reference
from builder.pipeline.objective import FleetObjective, check_weights, fleet_scores
from builder.pipeline.select import select
from builder.pipeline.simulate import device_oracle, simulate_selection
from builder.pipeline.teacher import stratified_folds
from plada.head import HeadHyperParams

# Lower = preferred on a tie: class quotas never collapse onto a few classes, and the
# energy-only rules were measured to collapse at small budgets.
ROBUSTNESS_RANK: Mapping[str, int] = {
    "safety-net": 0,
    "class-top-k": 1,
    "random-balanced": 2,
    "prototype": 3,
    "random": 4,
    "low-energy": 5,
    "high-energy": 6,
}
MAX_TIE_TOLERANCE = 0.02
DEFAULT_DEVICE_NAME = "device"


@dataclass(frozen=True)
class DeviceRows:
    """One device class's features: the target's train split and the reference corpus."""

    train: np.ndarray  # (n, D)
    reference: np.ndarray  # (N, D)


@dataclass(frozen=True)
class AutoInputs:
    """Everything validation needs, as arrays (rows aligned with the train split / corpus)."""

    train_teacher: np.ndarray  # (n, Dt) teacher-encoder features of the target train split
    train_labels: np.ndarray  # (n,) int64
    train_device: np.ndarray  # (n, Dd) default device's features of the same images
    reference_teacher: np.ndarray  # (N, Dt)
    reference_device: np.ndarray  # (N, Dd)
    num_classes: int
    teacher_l2: float
    temperature: float = 1.0
    default_device: str = DEFAULT_DEVICE_NAME
    more_devices: Mapping[str, DeviceRows] = field(default_factory=dict)  # validated too
    objective: FleetObjective = field(default_factory=FleetObjective)

    @property
    def devices(self) -> dict[str, DeviceRows]:
        """Every validated device class, the default first."""
        first = {self.default_device: DeviceRows(self.train_device, self.reference_device)}
        return first | {k: v for k, v in self.more_devices.items() if k != self.default_device}


@dataclass(frozen=True)
class ValidationResult:
    """Per candidate, its scores on every split it was validated on (finalists have more: a
    candidate's splits are always the first ones of `oracle`'s)."""

    specs: list[CandidateSpec]
    scores: np.ndarray  # (num_specs, first-round splits): the default device's balanced accuracy
    chosen: int
    tie_tolerance: float
    num_folds: int
    repeats: int
    notes: list[str] = field(default_factory=list)
    objective: list[np.ndarray] = field(default_factory=list)  # per spec: fleet score per split
    per_class: dict[str, list[np.ndarray]] = field(default_factory=dict)  # class -> per spec
    oracle: dict[str, np.ndarray] = field(default_factory=dict)  # class -> per split
    finalists: list[int] = field(default_factory=list)
    finalist_repeats: int = 0

    def _default(self, i: int) -> np.ndarray:
        if not self.per_class:
            row: np.ndarray = self.scores[i]
            return row
        return next(iter(self.per_class.values()))[i]

    def mean(self, i: int) -> float:
        """The default device's mean balanced accuracy over candidate i's splits."""
        return float(self._default(i).mean())

    def std(self, i: int) -> float:
        return float(self._default(i).std())

    def num_splits(self, i: int) -> int:
        return int(self._default(i).shape[0])

    def objective_mean(self, i: int) -> float:
        return float(self.objective[i].mean()) if self.objective else self.mean(i)

    def objective_std(self, i: int) -> float:
        return float(self.objective[i].std()) if self.objective else self.std(i)

    def class_accuracy(self, name: str, i: int) -> float:
        return float(self.per_class[name][i].mean())

    def class_oracle(self, name: str, i: int) -> float:
        """The class's validated oracle over candidate i's splits."""
        return float(self.oracle[name][: self.per_class[name][i].shape[0]].mean())

    def class_ratio(self, name: str, i: int) -> float:
        row = self.per_class[name][i]
        return float((row / np.maximum(self.oracle[name][: row.shape[0]], 1e-9)).mean())


def choose_candidate(
    specs: Sequence[CandidateSpec], scores: np.ndarray, *, tie_tolerance: float | None = None
) -> tuple[int, float]:
    """Index of the chosen candidate and the tolerance used (see the module docstring)."""
    means = scores.mean(axis=1)
    best = int(np.argmax(means))
    if tie_tolerance is None:
        se = (
            float(scores[best].std(ddof=1) / np.sqrt(scores.shape[1]))
            if scores.shape[1] > 1
            else 0.0
        )
        tie_tolerance = min(se, MAX_TIE_TOLERANCE)
    tied = [i for i in range(len(specs)) if means[i] >= means[best] - tie_tolerance - 1e-12]

    def preference(i: int) -> tuple[int, int, float]:
        return (ROBUSTNESS_RANK.get(specs[i].strategy, 99), -specs[i].keep, -float(means[i]))

    return min(tied, key=preference), tie_tolerance


def pick_finalists(objective: np.ndarray, count: int) -> list[int]:
    """The `count` candidates with the best mean objective, best first (ties: listed first)."""
    means = objective.mean(axis=1)
    order = sorted(range(len(means)), key=lambda i: (-means[i], i))
    return order[: max(1, count)]


def _validation_splits(
    labels: np.ndarray, *, num_classes: int, num_folds: int, repeats: int, seed: int
) -> tuple[list[np.ndarray], int, list[str]]:
    """(held-out folds of every repeat, the folds per repeat, notes): fewer folds when a class
    has fewer train images than folds."""
    smallest_class = int(np.bincount(labels, minlength=num_classes).min())
    notes: list[str] = []
    if smallest_class < num_folds:
        notes.append(
            f"{num_folds}-fold reduced to {max(2, smallest_class)}-fold: a class has "
            f"only {smallest_class} train images"
        )
        num_folds = max(2, smallest_class)
    if smallest_class < 2:
        raise BuilderError("validation needs at least 2 train images in every class")
    splits = [
        fold
        for r in range(repeats)
        for fold in stratified_folds(labels, num_folds=num_folds, seed=seed + 1000 * r)
    ]
    return splits, num_folds, notes


@dataclass(frozen=True)
class _Round:
    scores: np.ndarray  # (C, S, F) balanced accuracy per class, candidate, split
    oracle: np.ndarray  # (C, F)


def _run_round(
    inputs: AutoInputs,
    specs: Sequence[CandidateSpec],
    splits: Sequence[np.ndarray],
    *,
    seed: int,
    hp: HeadHyperParams | None,
    progress: Callable[[], None] | None,
) -> _Round:
    """Every candidate on every split, on every validated device class."""
    labels, n = inputs.train_labels, inputs.num_classes
    devices = list(inputs.devices.values())
    everything = np.arange(labels.shape[0])
    scores = np.zeros((len(devices), len(specs), len(splits)))
    oracle = np.zeros((len(devices), len(splits)))
    for j, val_idx in enumerate(splits):
        train_idx = np.setdiff1d(everything, val_idx)
        reference_scores = label_reference(
            inputs.train_teacher[train_idx],
            labels[train_idx],
            inputs.reference_teacher,
            num_classes=n,
            temperature=inputs.temperature,
            l2=inputs.teacher_l2,
        ).scores
        if len(devices) > 1:  # one class: its raw accuracy is the objective, no oracle needed
            for c, rows in enumerate(devices):
                oracle[c, j] = device_oracle(
                    rows.train[train_idx], labels[train_idx], rows.train[val_idx],
                    labels[val_idx], num_classes=n, hp=hp,
                ).balanced_accuracy  # fmt: skip
        for i, spec in enumerate(specs):
            selection = select(
                reference_scores, strategy=spec.strategy, keep=spec.keep, params=spec.params,
                seed=seed,
            )  # fmt: skip
            for c, rows in enumerate(devices):
                scores[c, i, j] = simulate_selection(
                    rows.reference, selection, rows.train[val_idx], labels[val_idx],
                    num_classes=n, hp=hp,
                ).balanced_accuracy  # fmt: skip
            if progress is not None:
                progress()
    return _Round(scores, oracle)


def validate_candidates(
    inputs: AutoInputs,
    specs: Sequence[CandidateSpec],
    *,
    num_folds: int = 3,
    repeats: int = 2,
    finalists: int = 0,
    finalist_repeats: int = 0,
    seed: int = 0,
    hp: HeadHyperParams | None = None,
    tie_tolerance: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationResult:
    """Score every candidate on repeated k-fold splits of the train split, the finalists on
    more, and choose one (see the module docstring)."""
    if not specs:
        raise BuilderError("no candidates to validate")
    names = list(inputs.devices)
    if len(names) > 1:
        check_weights(inputs.objective, names)
    labels = inputs.train_labels
    splits, num_folds, notes = _validation_splits(
        labels, num_classes=inputs.num_classes, num_folds=num_folds, repeats=repeats, seed=seed
    )
    more = finalist_repeats > 0 and finalists > 0
    extra_splits = (
        [
            fold
            for r in range(repeats, repeats + finalist_repeats)
            for fold in stratified_folds(labels, num_folds=num_folds, seed=seed + 1000 * r)
        ]
        if more
        else []
    )
    n_final = min(finalists, len(specs)) if more else 0
    total = len(specs) * len(splits) + n_final * len(extra_splits)
    done = [0]

    def tick() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)

    first = _run_round(inputs, specs, splits, seed=seed, hp=hp, progress=tick)
    objective = fleet_scores(first.scores, first.oracle, names, inputs.objective)
    rows = [objective[i] for i in range(len(specs))]
    per_class = {name: [first.scores[c, i] for i in range(len(specs))] for c, name in
                 enumerate(names)}  # fmt: skip
    oracle = {name: first.oracle[c] for c, name in enumerate(names)}
    chosen_among = list(range(len(specs)))
    if more:
        chosen_among = pick_finalists(objective, n_final)
        final_specs = [specs[i] for i in chosen_among]
        second = _run_round(inputs, final_specs, extra_splits, seed=seed, hp=hp, progress=tick)
        extra = fleet_scores(second.scores, second.oracle, names, inputs.objective)
        for k, i in enumerate(chosen_among):
            rows[i] = np.concatenate([rows[i], extra[k]])
            for c, name in enumerate(names):
                per_class[name][i] = np.concatenate([per_class[name][i], second.scores[c, k]])
        for c, name in enumerate(names):
            oracle[name] = np.concatenate([oracle[name], second.oracle[c]])
    matrix = np.stack([rows[i] for i in chosen_among])
    pick, tolerance = choose_candidate(
        [specs[i] for i in chosen_among], matrix, tie_tolerance=tie_tolerance
    )
    return ValidationResult(
        specs=list(specs),
        scores=first.scores[0],
        chosen=chosen_among[pick],
        tie_tolerance=tolerance,
        num_folds=num_folds,
        repeats=repeats,
        notes=notes,
        objective=rows,
        per_class=per_class,
        oracle=oracle,
        finalists=chosen_among if more else [],
        finalist_repeats=finalist_repeats if more else 0,
    )


@dataclass(frozen=True)
class TeacherRun:
    """One teacher encoder through validation."""

    features: TaskFeatures
    labelling: Labelling
    candidates: list[Candidate]
    validation: ValidationResult

    @property
    def chosen(self) -> Candidate:
        return self.candidates[self.validation.chosen]

    @property
    def val_accuracy(self) -> float:
        """The default device's validated balanced accuracy of the chosen candidate."""
        return round(self.validation.mean(self.validation.chosen), 4)

    @property
    def val_score(self) -> float:
        """What the choice maximised (the fleet objective; one class: its accuracy)."""
        return round(self.validation.objective_mean(self.validation.chosen), 4)
