"""The teacher search's hook into the build (builder.pipeline.build): when to run it, its stage
timings, and its report record. Kept here so the build only gains a few marked lines."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Protocol

from PIL import Image
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from builder.features.sources import (
    CorpusImages,
    FeatureSource,
    TaskFeatures,
    TaskImages,
    extract_features,
)
from builder.pipeline.config import TaskConfig
from builder.pipeline.targets import TargetTask
from builder.pipeline.teachers.choose import ChoiceConfig
from builder.pipeline.teachers.finetune import (
    FineTuneConfig,
    FineTunedFeatures,
    fine_tune_encoder,
)
from builder.pipeline.teachers.stage import (
    SearchedTeacher,
    candidate_test_accuracies,
    search_stage,
    teacher_features,
)
from builder.pipeline.validate import TeacherRun
from builder.report.model import BuildReport, TeacherCandidate, TeacherSearchInfo


class Clock(Protocol):
    timings: dict[str, float]

    def stage(self, name: str) -> AbstractContextManager[None]: ...


def add_fine_tuned(
    sources: Sequence[FeatureSource],
    teachers: Sequence[TaskFeatures],
    corpus: CorpusImages,
    images: TaskImages,
    task: TargetTask,
    config: TaskConfig,
    clock: Clock,
) -> tuple[list[FeatureSource], list[TaskFeatures]]:
    """`--fine-tune`: the first teacher encoder fine-tuned on train, as one more teacher."""
    with clock.stage("fine_tune"):
        encoder = fine_tune_encoder(
            sources[0].id, images.train, task.train.labels, num_classes=task.num_classes,
            config=FineTuneConfig(seed=config.seed),
        )  # fmt: skip
        source = FineTunedFeatures(encoder)
    with clock.stage("features"):
        features = extract_features(source, corpus, images)
    return [*sources, source], [*teachers, features]


def run_search(
    sources: Sequence[FeatureSource],
    teachers: Sequence[TaskFeatures],
    train_images: Sequence[Image.Image],
    task: TargetTask,
    config: TaskConfig,
    clock: Clock,
) -> SearchedTeacher | None:
    """The search on the train split, or None when the build was asked not to search."""
    if not config.teacher_search:
        return None
    # the teacher's own folds (config.teacher's seed) as the plain teachers' L2 choice uses them,
    # so known_l2 hands them exactly what they would have chosen
    choice = ChoiceConfig(teacher=config.teacher)
    choice = replace(choice, mlp=replace(choice.mlp, seed=config.seed))
    # one BLAS thread, as the build's later stages (build.single_blas: spinning threads were
    # measured 30x slower on this loaded 2-core machine)
    with clock.stage("teacher_search"), threadpool_limits(limits=1, user_api="blas"):
        return search_stage(
            sources, teachers, train_images, task.train.labels, num_classes=task.num_classes,
            augment=config.teacher_augment, config=choice,
        )  # fmt: skip


def known_l2(searched: SearchedTeacher | None) -> dict[str, float]:
    """Each encoder's plain softmax-regression L2 as the search chose it: the same stratified
    folds (seed, count) and grid as the plain teacher's own choice (teacher.choose_l2)."""
    if searched is None:
        return {}
    search = searched.search
    return {
        search.data.encoders[s.spec.encoders[0]]: s.spec.l2
        for s in search.scored
        if len(s.spec.encoders) == 1
        and s.spec.kind == "softmax-regression"
        and s.spec.augment is None
        and s.spec.l2 is not None
    }


def clear_win(run: TeacherRun, plain: Sequence[TeacherRun]) -> bool:
    """Whether the searched teacher's validated choice beats every plain teacher's by more than
    its own tie tolerance (validate.choose_candidate's: the standard error over folds, at most 2
    points). Measured on clipart 8 KiB: a 0.8-point validated lead with 120 train images became a
    4.3-point loss on test, so a lead inside the noise keeps the plain teacher."""
    margin = run.validation.tie_tolerance
    return all(run.val_accuracy > p.val_accuracy + margin for p in plain)


def searched_features(
    searched: SearchedTeacher, teachers: Sequence[TaskFeatures], clock: Clock
) -> TaskFeatures:
    with clock.stage("teacher_search"):
        return teacher_features(searched, teachers)


def with_search(
    record: BuildReport,
    searched: SearchedTeacher,
    teachers: Sequence[TaskFeatures],
    task: TargetTask,
    clock: Clock,
    run: TeacherRun | None,
) -> BuildReport:
    """The report with every candidate's validated score and (for information) test accuracy;
    the test refits are timed apart so the search's own cost stays visible."""
    with clock.stage("teacher_search_test"), threadpool_limits(limits=1, user_api="blas"):
        tests = candidate_test_accuracies(searched, teachers, task.test.labels)
    search = searched.search
    encoders = search.data.encoders
    rows = [
        TeacherCandidate(
            name=s.spec.name(encoders),
            kind=s.spec.kind,
            encoders=[encoders[i] for i in s.spec.encoders],
            augment=s.spec.augment,
            hyper=s.spec.hyper(),
            val_accuracy=round(s.mean, 4),
            val_std=round(s.std, 4),
            test_accuracy=round(test, 4),
            chosen=i == search.chosen,
        )
        for i, (s, test) in enumerate(zip(search.scored, tests, strict=True))
    ]
    info = TeacherSearchInfo(
        num_folds=search.num_folds,
        candidates=rows,
        ran=run is not None,
        device_val_accuracy=None if run is None else run.val_accuracy,
        device_tie_tolerance=None if run is None else round(run.validation.tie_tolerance, 4),
    )
    timings = {**record.timings_s, **clock.timings}
    return record.model_copy(update={"teacher_search": info, "timings_s": timings})
