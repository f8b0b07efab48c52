"""The task build: a labelled target folder -> a signed payload and its report, stage by stage.

    features   every device encoder and each teacher encoder: corpus (cached) + target splits
    views      (--auto with views) candidate views from the target's images; corpus features
               under each (cached per corpus, encoder and view)
    teacher_search  (issue 16 item 3) teacher candidates by k-fold on train: several encoders'
               features together, an MLP, augmented train images; the winner runs label ->
               candidates -> validate beside the plain teachers (no view only)
    per view (none first) and teacher encoder:
      label        teacher on the train split -> pseudo-labels and scores of every reference image
      candidates   settings x keeps under the budget, each with its signed size (byte search)
      validate     device heads on k-fold splits of train, on device features -> the choice
    the (view, teacher) whose choice validates best (the others stop here):
      payload      sign the chosen selection, checked against the budget
      simulate     every candidate on the test split, every device class and its oracle
      leakage      test images with a near-copy in the corpus
      report       report.json's record from the stages' records

Each stage is a function from records to a record; this module only wires them and times them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from builder.errors import BudgetError, BuilderError
from builder.features.sources import (
    FeatureSource,
    TaskFeatures,
    TaskImages,
    extract_features,
    make_test_features,
    viewed_features,
)
from builder.pipeline.candidates import Setting, make_candidates
from builder.pipeline.config import TaskConfig
from builder.pipeline.consensus import ClassLabels, agreement, class_l2
from builder.pipeline.label import label_reference, labelling_for
from builder.pipeline.leakage import check_leakage
from builder.pipeline.payload import PayloadFields, sign_payload
from builder.pipeline.report import report_for
from builder.pipeline.scores import ReferenceScores
from builder.pipeline.select import FLEET_STRATEGIES, Selection
from builder.pipeline.simulate import simulate_devices, test_candidates
from builder.pipeline.sizing import PayloadSizer, check_budget_fits
from builder.pipeline.targets import TargetTask, read_images
from builder.pipeline.teachers import hook as teacher_hook
from builder.pipeline.teachers.choose import TeacherRecipe
from builder.pipeline.validate import AutoInputs, DeviceRows, TeacherRun, validate_candidates
from builder.pipeline.views import corpus_sample, propose_views
from builder.report.model import BuildReport, TeacherChoice, ViewChoice, ViewReport
from plada.corpus import Corpus
from plada.signing import SigningKey
from plada.views import View

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class BuildResult:
    payload: bytes
    selection: Selection
    record: BuildReport

    @property
    def report(self) -> dict[str, Any]:
        """report.json's content."""
        return self.record.to_json()


@dataclass
class StageClock:
    """Seconds per stage, summed over the teacher encoders that ran it."""

    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


@contextmanager
def single_blas() -> Iterator[None]:
    """Many small BLAS calls follow the embedding. With two threads on a loaded 2-core machine
    OpenBLAS spins and was measured 30x slower (teacher 43 s vs 1.4 s); one thread is never much
    slower here."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def build_task(
    corpus: Corpus,
    task: TargetTask,
    *,
    teacher_source: FeatureSource,
    device_sources: Mapping[str, FeatureSource],
    signing_key: SigningKey | None,
    config: TaskConfig,
    progress: Progress | None = None,
) -> BuildResult:
    """Every stage with one teacher encoder."""
    return _build(
        corpus, task, [teacher_source], device_sources, signing_key, config, progress, choice=False
    )


def build_task_multi(
    corpus: Corpus,
    task: TargetTask,
    *,
    teacher_sources: Sequence[FeatureSource],
    device_sources: Mapping[str, FeatureSource],
    signing_key: SigningKey | None,
    config: TaskConfig,
    progress: Progress | None = None,
) -> BuildResult:
    """Every stage up to validation once per teacher encoder; the rest for the teacher whose
    choice validates best (train folds only; ties: the first listed). Measured: no teacher
    encoder wins every task (a teacher on the device's own encoder labelled the digits corpus
    far better than a stronger Lite1 one). The report lists every teacher's validation."""
    if not teacher_sources:
        raise BuilderError("at least one teacher encoder is needed")
    return _build(
        corpus, task, teacher_sources, device_sources, signing_key, config, progress, choice=True
    )


@dataclass(frozen=True)
class Build:
    """What the stages after feature extraction share within one build."""

    corpus: Corpus
    task: TargetTask
    config: TaskConfig
    fields: PayloadFields  # the payload's fixed fields
    signing_key: SigningKey | None
    clock: StageClock
    progress: Progress | None
    # issue 16 item 3: L2 per teacher encoder as the teacher search already chose it on the same
    # folds (each plain teacher would otherwise repeat that k-fold path)
    teacher_l2: Mapping[str, float] = field(default_factory=dict)
    # issue 16 item 2: each device class teacher's L2 for the consensus strategy, chosen on the
    # first teacher run that needs it (the classes' train features do not change with the view)
    class_l2: dict[str, float] = field(default_factory=dict)
    class_labels: ClassLabels = field(default_factory=ClassLabels)

    def report_progress(self, stage: str) -> Callable[[int, int], None] | None:
        progress = self.progress
        return None if progress is None else lambda i, n: progress(stage, i, n)


def _build(
    corpus: Corpus,
    task: TargetTask,
    teacher_sources: Sequence[FeatureSource],
    device_sources: Mapping[str, FeatureSource],
    signing_key: SigningKey | None,
    config: TaskConfig,
    progress: Progress | None,
    *,
    choice: bool,
) -> BuildResult:
    _check_inputs(corpus, task, device_sources, config)
    fields = PayloadFields.for_task(
        task=config.task_name or task.name,
        version=config.version,
        class_names=task.class_names,
        corpus=corpus,
        created_at=config.created_at if config.created_at is not None else int(time.time()),
        note=config.note,
    )
    check_budget_fits(
        fields,
        max_bytes=config.max_bytes,
        key_id=signing_key.key_id if signing_key else None,
    )
    clock = StageClock()
    with clock.stage("read_target"):
        images = TaskImages(read_images(task.train.paths), read_images(task.test.paths))
    with clock.stage("features"):
        devices = {n: extract_features(s, corpus, images) for n, s in device_sources.items()}
        teachers = [extract_features(s, corpus, images) for s in teacher_sources]
    if config.fine_tune:  # issue 16 item 3: --fine-tune (builder.pipeline.teachers.finetune)
        teacher_sources, teachers = teacher_hook.add_fine_tuned(
            teacher_sources, teachers, corpus, images, task, config, clock
        )
    views: list[View] = []
    looks: dict[str, dict[str, Any]] | None = None
    if config.auto and config.views:
        with clock.stage("views"):
            sample = corpus.images(corpus_sample(len(corpus)))
            views, want, have = propose_views(images.train, sample, max_views=config.max_views)
            looks = {"target": want.to_json(), "corpus_sample": have.to_json()}
    # issue 16 item 3: the teacher search (builder.pipeline.teachers.hook)
    searched_run: TeacherRun | None = None
    searched = teacher_hook.run_search(teacher_sources, teachers, images.train, task, config, clock)
    del images
    build = Build(
        corpus, task, config, fields, signing_key, clock, progress,
        teacher_hook.known_l2(searched),
    )  # fmt: skip
    default = config.default_device
    # Every named device class is validated (the fleet objective); the default one first.
    validated = {default: devices[default]} | {n: f for n, f in devices.items() if n != default}
    options: list[tuple[View | None, dict[str, TaskFeatures], list[TaskFeatures]]] = [
        (None, validated, teachers)
    ]
    for view in views:
        with clock.stage("features"):  # the corpus under the view; the target as it is
            on_view = {
                n: viewed_features(device_sources[n], corpus, view, f) for n, f in validated.items()
            }
            viewed = [
                viewed_features(s, corpus, view, t)
                for s, t in zip(teacher_sources, teachers, strict=True)
            ]
        options.append((view, on_view, viewed))
    with single_blas():
        runs: list[tuple[int, int, TeacherRun]] = []
        for v, (maybe_view, classes, teachs) in enumerate(options):
            on_view_build = replace(build, fields=replace(fields, view=maybe_view))
            runs += [
                (v, t, run_until_validation(x, classes, on_view_build))
                for t, x in enumerate(teachs)
            ]
        if searched is not None and not searched.redundant:  # issue 16 item 3: no view only
            strong = teacher_hook.searched_features(searched, teachers, clock)
            run = run_until_validation(strong, validated, build, recipe=searched.recipe)
            searched_run = run
            if teacher_hook.clear_win(run, [r for _, _, r in runs]):
                runs.append((0, len(teachers), run))
        # ties: no view first, then the teacher listed first
        best = max(range(len(runs)), key=lambda i: (runs[i][2].val_score, -i))
        best_view = options[runs[best][0]][0]
        choices = [
            TeacherChoice(
                encoder=r.features.encoder,
                val_accuracy=r.val_accuracy,
                strategy=r.chosen.spec.strategy,
                chosen=i == best,
                val_score=r.val_score,
                kind=r.labelling.teacher.kind,
            )
            for i, (v, _, r) in enumerate(runs)
            if v == runs[best][0]
        ]
        chosen_devices = dict(options[runs[best][0]][1])
        result = finish(
            runs[best][2],
            chosen_devices,
            replace(build, fields=replace(fields, view=best_view)),
            teacher_choice=choices if choice or searched is not None else None,
        )
    if searched is not None:  # issue 16 item 3
        result = replace(
            result,
            record=teacher_hook.with_search(
                result.record, searched, teachers, task, clock, searched_run
            ),
        )
    if not views:
        return result
    record = result.record.model_copy(
        update={
            "view": None if best_view is None else view_report(best_view),
            "view_choice": view_choices(options, runs, best),
            "looks": looks,
        }
    )
    return replace(result, record=record)


def view_report(view: View) -> ViewReport:
    return ViewReport(
        ops=[op.to_obj() for op in view.ops], digest=view.digest, description=view.describe()
    )


def view_choices(
    options: Sequence[tuple[View | None, Mapping[str, TaskFeatures], list[TaskFeatures]]],
    runs: Sequence[tuple[int, int, TeacherRun]],
    best: int,
) -> list[ViewChoice]:
    """Per candidate view (none first): its best teacher's validated choice."""
    out = []
    for v, (view, _, _) in enumerate(options):
        mine = [i for i, run in enumerate(runs) if run[0] == v]
        top = max(mine, key=lambda i: (runs[i][2].val_score, -i))
        run = runs[top][2]
        out.append(
            ViewChoice(
                view="none" if view is None else view.describe(),
                digest=None if view is None else view.digest,
                val_accuracy=run.val_accuracy,
                val_std=round(run.validation.std(run.validation.chosen), 4),
                teacher=run.features.encoder,
                strategy=run.chosen.spec.strategy,
                keep=run.chosen.spec.keep,
                chosen=runs[best][0] == v,
                val_score=run.val_score,
            )
        )
    return out


def _check_inputs(
    corpus: Corpus, task: TargetTask, devices: Mapping[str, FeatureSource], config: TaskConfig
) -> None:
    if config.default_device not in devices:
        raise BuilderError(
            f"default device class {config.default_device!r} is not among the simulated ones "
            f"({', '.join(devices)})"
        )
    if len(corpus) < task.num_classes:
        raise BudgetError(
            f"corpus has {len(corpus)} images, fewer than the {task.num_classes} classes"
        )


def run_until_validation(
    teacher: TaskFeatures,
    devices: Mapping[str, TaskFeatures],
    build: Build,
    recipe: TeacherRecipe | None = None,
) -> TeacherRun:
    """label -> candidates -> validate, for one teacher encoder (or a searched teacher: recipe),
    on every device class in `devices` (the default one first)."""
    config, task, clock = build.config, build.task, build.clock
    with clock.stage("teacher"):
        if recipe is None:
            labelling = label_reference(
                teacher.train,
                task.train.labels,
                teacher.reference,
                num_classes=task.num_classes,
                temperature=config.temperature,
                config=config.teacher,
                l2=build.teacher_l2.get(teacher.encoder),
            )
        else:  # issue 16 item 3: fitted as the search chose it
            labelling = labelling_for(
                recipe.fit(),
                teacher.train,
                task.train.labels,
                teacher.reference,
                temperature=config.temperature,
            )
        one = ((config.strategy, config.params),) if config.strategy is not None else None
        settings = one or config.settings
        plain = (teacher.train, labelling.teacher.l2) if recipe is None else None
        class_l2 = _class_l2(devices, build, settings, plain_teacher=plain)
        if class_l2:  # issue 16 item 2: the consensus strategy's agreement, whole train split
            labelling = replace(labelling, scores=_with_agreement(labelling.scores, devices, build))
    with clock.stage("candidates"):
        key_id = build.signing_key.key_id if build.signing_key else None
        candidates = make_candidates(
            labelling.scores,
            settings=settings,
            budget=config.budget,
            keep_fractions=None if one else config.keep_fractions,
            seed=config.seed,
            sizer=PayloadSizer(build.fields, key_id=key_id),
        )
    with clock.stage("validation"):
        device = devices[config.default_device]
        inputs = AutoInputs(
            train_teacher=teacher.train,
            train_labels=task.train.labels,
            train_device=device.train,
            reference_teacher=teacher.reference,
            reference_device=device.reference,
            num_classes=task.num_classes,
            teacher_l2=labelling.teacher.l2,
            temperature=config.temperature,
            default_device=config.default_device,
            more_devices={n: DeviceRows(f.train, f.reference) for n, f in devices.items()},
            objective=config.objective,
            recipe=recipe,
            class_l2=class_l2,
            class_labels=build.class_labels,
        )
        validation = validate_candidates(
            inputs,
            [c.spec for c in candidates],
            num_folds=config.num_folds,
            repeats=config.repeats,
            finalists=config.finalists if config.auto else 0,
            finalist_repeats=config.finalist_repeats,
            seed=config.seed,
            hp=replace(config.hp, seed=config.seed),
            progress=build.report_progress("validate"),
        )
    return TeacherRun(teacher, labelling, candidates, validation)


def _class_l2(
    devices: Mapping[str, TaskFeatures],
    build: Build,
    settings: Sequence[Setting],
    *,
    plain_teacher: tuple[np.ndarray, float] | None,  # (its train features, its chosen L2)
) -> dict[str, float]:
    """Each device class teacher's L2 when the build validates several classes and a fleet
    strategy is asked for (else empty: no agreement is computed). A class whose train features
    are a plain (not searched) teacher's own takes the L2 that teacher chose (the same k-fold
    path, not run twice)."""
    if len(devices) < 2 or not any(name in FLEET_STRATEGIES for name, _ in settings):
        return {}
    if plain_teacher is not None:
        train, l2 = plain_teacher
        for name, features in devices.items():
            if features.train is train:
                build.class_l2.setdefault(name, l2)
    missing = {n: f for n, f in devices.items() if n not in build.class_l2}
    if missing:
        build.class_l2.update(
            class_l2(missing, build.task.train.labels, num_classes=build.task.num_classes,
                     config=build.config.teacher)
        )  # fmt: skip
    return {n: build.class_l2[n] for n in devices}


def _with_agreement(
    scores: ReferenceScores, devices: Mapping[str, TaskFeatures], build: Build
) -> ReferenceScores:
    labels = build.task.train.labels
    agree = agreement(
        scores.labels, devices, labels, np.arange(labels.shape[0]),
        num_classes=build.task.num_classes, l2=build.class_l2, config=build.config.teacher,
        memo=build.class_labels,
    )  # fmt: skip
    return replace(scores, agreement=agree)


def finish(
    run: TeacherRun,
    devices: Mapping[str, TaskFeatures],
    build: Build,
    *,
    teacher_choice: list[TeacherChoice] | None,
) -> BuildResult:
    """payload -> simulate -> leakage -> report, for the chosen teacher's choice."""
    config, task, clock = build.config, build.task, build.clock
    hp = replace(config.hp, seed=config.seed)
    chosen, y_test, n = run.chosen, task.test.labels, task.num_classes
    with clock.stage("features"):  # deferred until now: the losing teachers never embed test
        make_test_features([run.features, *devices.values()])
    with clock.stage("payload"):
        payload = sign_payload(
            build.fields,
            chosen.selection,
            accuracy_estimate=run.val_accuracy,
            signing_key=build.signing_key,
            codec=chosen.codec,
            max_bytes=config.max_bytes,
        )
    with clock.stage("simulate"):
        tests = test_candidates(
            [c.selection for c in run.candidates],
            devices[config.default_device],
            test_labels=y_test,
            num_classes=n,
            hp=hp,
            progress=build.report_progress("test"),
        )
        outcomes = simulate_devices(
            chosen.selection, devices, train_labels=task.train.labels, test_labels=y_test,
            num_classes=n, hp=hp,
        )  # fmt: skip
    with clock.stage("leakage"):
        predictions = run.labelling.teacher.predict(run.features.test)
        leakage = check_leakage(
            run.features, task.test.paths, y_test, predictions, threshold=config.leakage_threshold
        )
    record = report_for(
        run, task=task, corpus=build.corpus, config=config, hp=hp, tests=tests,
        outcomes=outcomes, leakage=leakage, predictions=predictions, payload_bytes=len(payload),
        timings_s=dict(clock.timings), total_s=time.perf_counter() - clock.started,
        teacher_choice=teacher_choice,
    )  # fmt: skip
    return BuildResult(payload=payload, selection=chosen.selection, record=record)
