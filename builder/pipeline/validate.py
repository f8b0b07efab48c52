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

from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

import numpy as np

from builder.errors import BudgetError, BuilderError
from builder.features.sources import TaskFeatures
from builder.pipeline.candidates import Candidate, CandidateSpec
from builder.pipeline.consensus import ClassLabels, agreement
from builder.pipeline.label import Labelling, label_reference, labelling_for
from builder.pipeline.objective import FleetObjective, check_weights, fleet_scores
from builder.pipeline.scores import ReferenceScores
from builder.pipeline.select import FLEET_STRATEGIES, Selection, select
from builder.pipeline.simulate import device_oracle, simulate_selection
from builder.pipeline.teacher import TeacherConfig, stratified_folds
from builder.pipeline.teachers.choose import TeacherRecipe
from plada.head import HeadHyperParams
from plada.ordered_pool import worker_count

# Lower = preferred on a tie: class quotas never collapse onto a few classes, and the
# energy-only rules were measured to collapse at small budgets.
ROBUSTNESS_RANK: Mapping[str, int] = {
    "safety-net": 0,
    "class-top-k": 1,
    "random-balanced": 2,
    "consensus": 3,
    "prototype": 4,
    "random": 5,
    "low-energy": 6,
    "high-energy": 7,
}
MAX_TIE_TOLERANCE = 0.02
_K = TypeVar("_K")
_V = TypeVar("_V")
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

    # issue 16 item 3: a searched teacher refits its own kind per fold (None: softmax regression)
    recipe: TeacherRecipe | None = None
    # issue 16 item 2: each class teacher's L2 (builder.pipeline.consensus); empty: no agreement
    class_l2: Mapping[str, float] = field(default_factory=dict)
    class_labels: ClassLabels = field(default_factory=ClassLabels)  # shared by a build's runs

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


class _Evaluator:
    """Balanced accuracy of (class, candidate, split), each computed once and only when asked:
    the fold teacher's scores per split, the selection per (candidate, split), the head per
    class. Lazy so that classes and candidates that cannot change the choice cost nothing."""

    def __init__(
        self,
        inputs: AutoInputs,
        specs: Sequence[CandidateSpec],
        splits: Sequence[np.ndarray],
        *,
        seed: int,
        hp: HeadHyperParams | None,
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self.inputs, self.specs, self.splits, self.seed, self.hp = inputs, specs, splits, seed, hp
        self.pool = pool
        self.devices = list(inputs.devices.values())
        self._teacher: dict[int, ReferenceScores] = {}
        self._selection: dict[tuple[int, int], Selection] = {}
        self._score: dict[tuple[int, int, int], float] = {}
        self._oracle: dict[tuple[int, int], float] = {}

    def _parts(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        val_idx = self.splits[j]
        return np.setdiff1d(np.arange(self.inputs.train_labels.shape[0]), val_idx), val_idx

    def _reference_scores(self, j: int) -> ReferenceScores:
        if j not in self._teacher:
            self._teacher[j] = self._fit_split(j)
        return self._teacher[j]

    def _fit_split(self, j: int) -> ReferenceScores:
        """The fold teacher of split j, scoring the whole reference corpus (and, when the
        candidates need it, the class teachers' agreement, fitted on the same training part)."""
        train_idx, _ = self._parts(j)
        x = self.inputs
        if x.recipe is None:
            scores = label_reference(
                x.train_teacher[train_idx], x.train_labels[train_idx], x.reference_teacher,
                num_classes=x.num_classes, temperature=x.temperature, l2=x.teacher_l2,
            ).scores  # fmt: skip
        else:  # issue 16 item 3: a searched teacher refits its own kind per fold
            scores = labelling_for(
                x.recipe.fit(train_idx), x.train_teacher[train_idx],
                x.train_labels[train_idx], x.reference_teacher, temperature=x.temperature,
            ).scores  # fmt: skip
        if not x.class_l2 or not any(s.strategy in FLEET_STRATEGIES for s in self.specs):
            return scores
        agree = agreement(
            scores.labels, x.devices, x.train_labels, train_idx,
            num_classes=x.num_classes, l2=x.class_l2, config=TeacherConfig(), memo=x.class_labels,
        )  # fmt: skip
        return replace(scores, agreement=agree)

    def _select(self, i: int, j: int) -> Selection:
        if (i, j) not in self._selection:
            self._selection[(i, j)] = self._pick((i, j))
        return self._selection[(i, j)]

    def _pick(self, pair: tuple[int, int]) -> Selection:
        i, j = pair
        spec = self.specs[i]
        return select(
            self._reference_scores(j), strategy=spec.strategy, keep=spec.keep,
            params=spec.params, seed=self.seed,
        )  # fmt: skip

    def score(self, c: int, i: int, j: int) -> float:
        """Class c's balanced accuracy on split j with candidate i's selection."""
        if (c, i, j) not in self._score:
            self._score[(c, i, j)] = self._score_of((c, i, j))
        return self._score[(c, i, j)]

    def _score_of(self, key: tuple[int, int, int]) -> float:
        c, i, j = key
        _, val_idx = self._parts(j)
        rows, labels = self.devices[c], self.inputs.train_labels
        try:
            selection = self._select(i, j)
        except BudgetError:
            if self.specs[i].strategy not in FLEET_STRATEGIES:
                raise
            return 0.0  # no image agreed on by every class on this split: nothing to teach
        return simulate_selection(
            rows.reference, selection, rows.train[val_idx], labels[val_idx],
            num_classes=self.inputs.num_classes, hp=self.hp,
        ).balanced_accuracy  # fmt: skip

    def oracle(self, c: int, j: int) -> float:
        """Class c's head on split j's labelled train part (its own oracle on that split)."""
        if (c, j) not in self._oracle:
            self._oracle[(c, j)] = self._oracle_of((c, j))
        return self._oracle[(c, j)]

    def _oracle_of(self, key: tuple[int, int]) -> float:
        c, j = key
        train_idx, val_idx = self._parts(j)
        rows, labels = self.devices[c], self.inputs.train_labels
        return device_oracle(
            rows.train[train_idx], labels[train_idx], rows.train[val_idx], labels[val_idx],
            num_classes=self.inputs.num_classes, hp=self.hp,
        ).balanced_accuracy  # fmt: skip

    def fill(
        self,
        scores: Sequence[tuple[int, int, int]],
        oracles: Sequence[tuple[int, int]] = (),
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Compute these (class, candidate, split) scores and (class, split) oracles on the pool's
        threads (each head's numpy work mostly outside the GIL: 1.5x on 2 cores), their fold
        teachers and selections first. The values are the ones `score` and `oracle` would
        compute one by one; progress(done) after each score."""
        scores = [k for k in dict.fromkeys(scores) if k not in self._score]
        oracles = [k for k in dict.fromkeys(oracles) if k not in self._oracle]
        splits = [j for j in dict.fromkeys(j for _, _, j in scores) if j not in self._teacher]
        for j, ref in zip(splits, self._map(self._fit_split, splits), strict=True):
            self._teacher[j] = ref
        pairs = [p for p in dict.fromkeys((i, j) for _, i, j in scores) if p not in self._selection]
        for pair, chosen in zip(pairs, self._map(self._pick, pairs), strict=True):
            self._selection[pair] = chosen
        for pair, value in zip(oracles, self._map(self._oracle_of, oracles), strict=True):
            self._oracle[pair] = value
        for done, (triple, value) in enumerate(
            zip(scores, self._map(self._score_of, scores), strict=True)
        ):
            self._score[triple] = value
            if progress is not None:
                progress(done + 1)

    def _map(self, fn: Callable[[_K], _V], keys: Sequence[_K]) -> Iterator[_V]:
        if self.pool is None or len(keys) < 2:
            return map(fn, keys)
        return self.pool.map(fn, keys)

    def row(self, c: int, i: int, splits: Sequence[int]) -> np.ndarray:
        self.fill([(c, i, j) for j in splits])
        return np.asarray([self.score(c, i, j) for j in splits])

    def known(self, c: int, i: int, splits: Sequence[int]) -> np.ndarray:
        """What was computed, NaN where nothing was (for the report only)."""
        return np.asarray([self._score.get((c, i, j), np.nan) for j in splits])

    def oracles(self, c: int, splits: Sequence[int]) -> np.ndarray:
        self.fill([], [(c, j) for j in splits])
        return np.asarray([self.oracle(c, j) for j in splits])


def _objective_row(
    ev: _Evaluator,
    i: int,
    splits: Sequence[int],
    objective: FleetObjective,
    names: Sequence[str],
    *,
    class_order: Sequence[int],
    floor: float,
) -> np.ndarray | None:
    """Candidate i's objective per split, or None once a class's mean ratio (an upper bound of
    the worst objective's mean) falls below `floor`: it can neither win nor tie."""
    if len(names) == 1 or objective.kind == "default":
        return ev.row(0, i, splits)
    bound = np.inf
    for c in class_order:
        ratio = ev.row(c, i, splits) / np.maximum(ev.oracles(c, splits), 1e-9)
        bound = min(bound, float(ratio.mean()))
        if objective.kind == "worst" and bound < floor:
            return None
    scores = np.stack([ev.row(c, i, splits) for c in range(len(names))])[:, None, :]
    oracle = np.stack([ev.oracles(c, splits) for c in range(len(names))])
    row: np.ndarray = fleet_scores(scores, oracle, names, objective)[0]
    return row


def _first_round(
    ev: _Evaluator,
    order: Sequence[int],
    first: Sequence[int],
    objective: FleetObjective,
    names: Sequence[str],
    *,
    prune: bool,
) -> tuple[dict[int, np.ndarray], list[int]]:
    """The objective rows of the candidates in `order` that can still win or tie (all of them
    without `prune`), and the class order the bound uses: the default class first, then the
    others worst-first as the first scored candidate shows them."""
    class_order = list(range(len(names)))
    rows: dict[int, np.ndarray] = {}
    best = -np.inf
    for i in order:
        row = _objective_row(
            ev, i, first, objective, names, class_order=class_order,
            floor=best - MAX_TIE_TOLERANCE if prune else -np.inf,
        )  # fmt: skip
        if row is None:
            continue
        rows[i] = row
        best = max(best, float(row.mean()))
        if len(rows) == 1 and len(names) > 1:
            ratio = {
                c: float((ev.row(c, i, first) / ev.oracles(c, first)).mean())
                for c in range(1, len(names))
            }
            class_order = [0, *sorted(ratio, key=lambda c: ratio[c])]
    return rows, class_order


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
    prune: bool = True,
    workers: int | None = None,
) -> ValidationResult:
    """Score every candidate on repeated k-fold splits of the train split, the finalists on
    more, and choose one (see the module docstring).

    With several classes and the worst objective, candidates are scored best-first by the default
    class's ratio, and a candidate stops being scored as soon as one class's mean ratio is more
    than the largest tie tolerance below the best objective so far: the worst objective's mean is
    at most any class's mean ratio, so it could neither win nor tie. The choice is the one scoring
    everything would make (`prune=False` scores everything); only the report misses such
    candidates' other classes. Heads train on `workers` threads (default: one per core); the
    result is the same for any number."""
    if not specs:
        raise BuilderError("no candidates to validate")
    names = list(inputs.devices)
    fleet = len(names) > 1
    if fleet:
        check_weights(inputs.objective, names)
    labels = inputs.train_labels
    splits, num_folds, notes = _validation_splits(
        labels, num_classes=inputs.num_classes, num_folds=num_folds, repeats=repeats, seed=seed
    )
    more = finalist_repeats > 0 and finalists > 0
    first = list(range(len(splits)))
    if more:
        splits += [
            fold
            for r in range(repeats, repeats + finalist_repeats)
            for fold in stratified_folds(labels, num_folds=num_folds, seed=seed + 1000 * r)
        ]
    extra = list(range(len(first), len(splits)))
    threads = worker_count(workers)
    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="validate") as pool:
        ev = _Evaluator(inputs, specs, splits, seed=seed, hp=hp, pool=pool)
        n_specs = len(specs)
        # the default class on every candidate: the report's rows
        ev.fill(
            [(0, i, j) for j in first for i in range(n_specs)],
            progress=None
            if progress is None
            else lambda done: progress(done, n_specs * len(first)),
        )
        default = np.stack([ev.row(0, i, first) for i in range(n_specs)])
        # best-first by the default class's ratio; the other classes worst-first once one candidate
        # shows which they are: both make the bound bite early
        oracle0 = np.maximum(ev.oracles(0, first), 1e-9) if fleet else np.ones(len(first))
        order = sorted(range(n_specs), key=lambda i: (-float((default[i] / oracle0).mean()), i))
        rows, class_order = _first_round(ev, order, first, inputs.objective, names, prune=prune)
        evaluated = sorted(rows)
        chosen_among = evaluated
        if more:
            top = pick_finalists(np.stack([rows[i] for i in evaluated]), finalists)
            chosen_among = [evaluated[k] for k in top]
            for i in chosen_among:
                tail = _objective_row(
                    ev, i, extra, inputs.objective, names, class_order=class_order, floor=-np.inf
                )
                if tail is None:  # pragma: no cover - no floor, never pruned
                    raise BuilderError("internal: a finalist was pruned")
                rows[i] = np.concatenate([rows[i], tail])
        pick, tolerance = choose_candidate(
            [specs[i] for i in chosen_among],
            np.stack([rows[i] for i in chosen_among]),
            tie_tolerance=tie_tolerance,
        )
        chosen = chosen_among[pick]
        splits_of = {
            i: first + extra if more and i in chosen_among else first for i in range(n_specs)
        }
        if fleet:
            for c in range(len(names)):  # the chosen candidate's every class, for the report
                ev.row(c, chosen, splits_of[chosen])
        return ValidationResult(
            specs=list(specs),
            scores=default,
            chosen=chosen,
            tie_tolerance=tolerance,
            num_folds=num_folds,
            repeats=repeats,
            notes=notes,
            objective=[rows.get(i, np.full(len(first), np.nan)) for i in range(n_specs)],
            per_class={
                name: [ev.known(c, i, splits_of[i]) for i in range(n_specs)]
                for c, name in enumerate(names)
            },
            oracle={
                name: ev.oracles(c, first + extra) if fleet else np.ones(len(splits))
                for c, name in enumerate(names)
            },
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
