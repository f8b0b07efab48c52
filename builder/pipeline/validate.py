"""`--auto`: choose strategy, parameters and keep count on the train split only, never on test.

For every fold of a repeated stratified k-fold split of the target's train split, a fold teacher
is trained on the other folds and scores the whole reference corpus; each candidate (strategy,
params, keep) then selects from those scores, the device head is trained on the selection's DEVICE
features, and its balanced accuracy is measured on the held-out fold's device features. The
candidate with the best mean wins, except that candidates within the tie tolerance of the best (by
default its standard error over folds, at most 2 points) are broken in favour of the more robust
strategy, then the larger keep: the prototype measured that tiny validation sets make several
strategies tie and single images swing the score by points.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from builder.errors import BuilderError
from builder.features.sources import TaskFeatures
from builder.pipeline.candidates import Candidate, CandidateSpec
from builder.pipeline.label import Labelling, label_reference, labelling_for
from builder.pipeline.select import select
from builder.pipeline.simulate import simulate_selection
from builder.pipeline.teacher import stratified_folds
from builder.pipeline.teachers.choose import TeacherRecipe
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


@dataclass(frozen=True)
class AutoInputs:
    """Everything validation needs, as arrays (rows aligned with the train split / corpus)."""

    train_teacher: np.ndarray  # (n, Dt) teacher-encoder features of the target train split
    train_labels: np.ndarray  # (n,) int64
    train_device: np.ndarray  # (n, Dd) device-encoder features of the same images
    reference_teacher: np.ndarray  # (N, Dt)
    reference_device: np.ndarray  # (N, Dd)
    num_classes: int
    teacher_l2: float
    temperature: float = 1.0
    # issue 16 item 3: a searched teacher refits its own kind per fold (None: softmax regression)
    recipe: TeacherRecipe | None = None


@dataclass(frozen=True)
class ValidationResult:
    specs: list[CandidateSpec]
    scores: np.ndarray  # (num_specs, num_splits) balanced accuracy on each held-out fold
    chosen: int
    tie_tolerance: float
    num_folds: int
    repeats: int
    notes: list[str] = field(default_factory=list)

    def mean(self, i: int) -> float:
        return float(self.scores[i].mean())

    def std(self, i: int) -> float:
        return float(self.scores[i].std())


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


def validate_candidates(
    inputs: AutoInputs,
    specs: Sequence[CandidateSpec],
    *,
    num_folds: int = 3,
    repeats: int = 2,
    seed: int = 0,
    hp: HeadHyperParams | None = None,
    tie_tolerance: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ValidationResult:
    """Score every candidate on repeated k-fold splits of the train split and choose one."""
    if not specs:
        raise BuilderError("no candidates to validate")
    labels = inputs.train_labels
    splits, num_folds, notes = _validation_splits(
        labels, num_classes=inputs.num_classes, num_folds=num_folds, repeats=repeats, seed=seed
    )
    everything = np.arange(labels.shape[0])
    matrix = np.zeros((len(specs), len(splits)))
    total = len(specs) * len(splits)
    for j, val_idx in enumerate(splits):
        train_idx = np.setdiff1d(everything, val_idx)
        if inputs.recipe is None:
            scores = label_reference(
                inputs.train_teacher[train_idx],
                labels[train_idx],
                inputs.reference_teacher,
                num_classes=inputs.num_classes,
                temperature=inputs.temperature,
                l2=inputs.teacher_l2,
            ).scores
        else:  # issue 16 item 3
            scores = labelling_for(
                inputs.recipe.fit(train_idx),
                inputs.train_teacher[train_idx],
                labels[train_idx],
                inputs.reference_teacher,
                temperature=inputs.temperature,
            ).scores
        for i, spec in enumerate(specs):
            selection = select(
                scores, strategy=spec.strategy, keep=spec.keep, params=spec.params, seed=seed
            )
            matrix[i, j] = simulate_selection(
                inputs.reference_device,
                selection,
                inputs.train_device[val_idx],
                labels[val_idx],
                num_classes=inputs.num_classes,
                hp=hp,
            ).balanced_accuracy
            if progress is not None:
                progress(j * len(specs) + i + 1, total)
    chosen, tolerance = choose_candidate(specs, matrix, tie_tolerance=tie_tolerance)
    return ValidationResult(
        specs=list(specs),
        scores=matrix,
        chosen=chosen,
        tie_tolerance=tolerance,
        num_folds=num_folds,
        repeats=repeats,
        notes=notes,
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
        return round(self.validation.mean(self.validation.chosen), 4)
