"""The report stage: report.json's record (builder.report.model) from every stage's record."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from builder.features.sources import TaskFeatures
from builder.pipeline.candidates import Candidate
from builder.pipeline.config import TaskConfig
from builder.pipeline.label import Labelling
from builder.pipeline.leakage import LeakageCheck
from builder.pipeline.objective import worst_class
from builder.pipeline.simulate import DeviceOutcome, EvalResult
from builder.pipeline.targets import TargetTask
from builder.pipeline.teacher import balanced_accuracy
from builder.pipeline.validate import TeacherRun, ValidationResult
from builder.report.model import (
    BuildReport,
    CandidateRow,
    CorpusInfo,
    DeviceResult,
    EnergyHistogram,
    FleetClass,
    FleetInfo,
    LeakageExample,
    LeakageInfo,
    TargetInfo,
    TeacherChoice,
    TeacherInfo,
    ValidationInfo,
)
from plada.corpus import Corpus
from plada.head import HeadHyperParams
from plada.process_memory import own_peak_mb


def energy_histogram(
    energy_all: np.ndarray, kept: np.ndarray, *, bins: int = 50
) -> EnergyHistogram:
    """Histogram of all reference energies and of the kept ones, on the same edges."""
    edges = np.histogram_bin_edges(energy_all, bins=bins)
    all_counts, _ = np.histogram(energy_all, bins=edges)
    kept_counts, _ = np.histogram(energy_all[kept], bins=edges)
    return EnergyHistogram(
        edges=[float(e) for e in edges],
        all=[float(c) for c in all_counts],
        kept=[float(c) for c in kept_counts],
    )


def _ratio(value: float, oracle: float) -> float | None:
    return value / oracle if oracle else None


def device_results(outcomes: Mapping[str, DeviceOutcome]) -> dict[str, DeviceResult]:
    return {
        name: DeviceResult(
            encoder=o.encoder,
            accuracy=o.payload.accuracy,
            balanced_accuracy=o.payload.balanced_accuracy,
            oracle_accuracy=o.oracle.accuracy,
            oracle_balanced_accuracy=o.oracle.balanced_accuracy,
            relative_to_oracle=_ratio(o.payload.accuracy, o.oracle.accuracy),
            balanced_relative_to_oracle=_ratio(
                o.payload.balanced_accuracy, o.oracle.balanced_accuracy
            ),
        )
        for name, o in outcomes.items()
    }


def candidate_rows(
    candidates: Sequence[Candidate],
    validation: ValidationResult,
    tests: Sequence[EvalResult],
    *,
    payload_bytes: int,
    num_classes: int,
) -> list[CandidateRow]:
    """One row per candidate; the chosen one carries the size of the payload actually signed."""
    return [
        CandidateRow(
            strategy=c.spec.strategy,
            params=dict(c.spec.params),
            keep=c.spec.keep,
            payload_bytes=payload_bytes if i == validation.chosen else c.payload_bytes,
            val_accuracy=validation.mean(i),
            val_std=validation.std(i),
            test_accuracy=test.accuracy,
            test_balanced_accuracy=test.balanced_accuracy,
            classes_kept=int(np.count_nonzero(c.selection.class_counts(num_classes))),
            chosen=i == validation.chosen,
        )
        for i, (c, test) in enumerate(zip(candidates, tests, strict=True))
    ]


def teacher_info(
    features: TaskFeatures,
    labelling: Labelling,
    leakage: LeakageCheck,
    predictions: np.ndarray,
    test_labels: np.ndarray,
    *,
    temperature: float,
) -> TeacherInfo:
    return TeacherInfo(
        encoder=features.encoder,
        kind=labelling.teacher.kind,
        l2=labelling.teacher.l2,
        accuracy=float(np.mean(predictions == test_labels)),
        balanced_accuracy=balanced_accuracy(predictions, test_labels),
        accuracy_without_leaked=leakage.teacher_accuracy_without_leaked,
        temperature=temperature,
    )


def leakage_info(leakage: LeakageCheck, *, encoder: str) -> LeakageInfo:
    return LeakageInfo(
        threshold=leakage.result.threshold,
        encoder=encoder,
        flagged=leakage.result.num_flagged,
        examples=[
            LeakageExample(
                test_image=str(e.test_image), reference_index=e.reference_index, cosine=e.cosine
            )
            for e in leakage.examples
        ],
    )


def validation_info(validation: ValidationResult, config: TaskConfig) -> ValidationInfo:
    i = validation.chosen
    fleet = len(validation.per_class) > 1
    return ValidationInfo(
        metric="balanced_accuracy",
        num_folds=validation.num_folds,
        repeats=validation.repeats,
        tie_tolerance=validation.tie_tolerance,
        split="train only (the test split is never used to choose)",
        finalists=len(validation.finalists),
        finalist_repeats=validation.finalist_repeats,
        chosen_splits=validation.num_splits(i),
        chosen_std=round(validation.std(i), 4),
        objective=config.objective.kind if fleet else None,
        objective_mean=round(validation.objective_mean(i), 4) if fleet else None,
        objective_std=round(validation.objective_std(i), 4) if fleet else None,
    )


def fleet_info(
    validation: ValidationResult, devices: Mapping[str, DeviceResult], config: TaskConfig
) -> FleetInfo | None:
    """Each validated class's expected (validated) and simulated (test) accuracy against its own
    oracle, and the worst class; None when only one class was validated."""
    if len(validation.per_class) < 2:
        return None
    i, weights = validation.chosen, config.objective.weights
    classes = {}
    for name in validation.per_class:
        test = devices.get(name)
        classes[name] = FleetClass(
            encoder=test.encoder if test else None,
            weight=weights.get(name) if config.objective.kind == "weighted" else None,
            val_accuracy=round(validation.class_accuracy(name, i), 4),
            val_oracle=round(validation.class_oracle(name, i), 4),
            val_ratio=round(validation.class_ratio(name, i), 4),
            test_accuracy=test.balanced_accuracy if test else None,
            test_oracle=test.oracle_balanced_accuracy if test else None,
            test_ratio=test.balanced_relative_to_oracle if test else None,
        )
    worst = worst_class({n: c.val_ratio for n, c in classes.items()})
    tested = {n: c.test_ratio for n, c in classes.items() if c.test_ratio is not None}
    return FleetInfo(
        objective=config.objective.kind,
        description=config.objective.describe(),
        worst_class=worst,
        worst_val_ratio=classes[worst].val_ratio,
        worst_test_class=worst_class(tested) if tested else None,
        classes=classes,
        source=config.fleet_source,
        fleet_counts=dict(config.fleet_counts) if config.fleet_counts else None,
    )


def target_info(task: TargetTask) -> TargetInfo:
    c = task.num_classes
    return TargetInfo(
        path=str(task.root),
        train_images=len(task.train),
        test_images=len(task.test),
        train_per_class=np.bincount(task.train.labels, minlength=c).tolist(),
        test_per_class=np.bincount(task.test.labels, minlength=c).tolist(),
    )


def peak_rss_mb() -> float:
    """This build's own peak (a build spawned by a large process is not charged its size)."""
    return own_peak_mb()


def assemble_report(
    *,
    task: TargetTask,
    corpus: Corpus,
    config: TaskConfig,
    teacher: TeacherInfo,
    teacher_accuracy: float,
    devices: dict[str, DeviceResult],
    chosen: Candidate,
    candidates: list[CandidateRow],
    labelling: Labelling,
    leakage: LeakageInfo,
    leakage_flags: int,
    validation: ValidationResult,
    payload_bytes: int,
    hp: HeadHyperParams,
    timings_s: dict[str, float],
    total_s: float,
    teacher_choice: list[TeacherChoice] | None,
) -> BuildReport:
    """The whole report; a long literal because report.json is flat by history (its keys are
    what `plada-build report`, the bench and users' scripts read)."""
    default = devices[config.default_device]
    selection, num_classes = chosen.selection, task.num_classes
    report = BuildReport(
        task=config.task_name or task.name,
        version=config.version,
        class_names=list(task.class_names),
        target=target_info(task),
        corpus=CorpusInfo(path=str(corpus.path), fingerprint=corpus.fingerprint, size=len(corpus)),
        budget=str(config.budget),
        budget_kind=config.budget.kind,
        mode="auto" if config.auto else "strategy",
        seed=config.seed,
        teacher=teacher,
        teacher_accuracy=teacher_accuracy,
        default_device=config.default_device,
        device_accuracy=default.accuracy,
        device_balanced_accuracy=default.balanced_accuracy,
        device_oracle_accuracy=default.oracle_accuracy,
        device_oracle_balanced_accuracy=default.oracle_balanced_accuracy,
        devices=devices,
        strategy=selection.strategy,
        params=dict(selection.params),
        keep=selection.keep,
        num_indices=selection.keep,
        payload_bytes=payload_bytes,
        accuracy_estimate=round(validation.mean(validation.chosen), 4),
        leakage_flags=leakage_flags,
        leakage=leakage,
        validation=validation_info(validation, config),
        notes=list(validation.notes),
        candidates=candidates,
        kept_per_class=selection.class_counts(num_classes).tolist(),
        reference_pseudo_label_counts=np.bincount(
            labelling.scores.labels, minlength=num_classes
        ).tolist(),
        energy_histogram=energy_histogram(labelling.scores.energy, selection.indices),
        head_hyperparams=hp.to_dict(),
        timings_s=timings_s,
        total_s=total_s,
        peak_rss_mb=peak_rss_mb(),
    )
    fleet = fleet_info(validation, devices, config)
    if fleet is not None:
        report = report.model_copy(update={"fleet": fleet})
    if teacher_choice is None:
        return report
    # Several teacher encoders: report.json lists how each validated (only then has the key).
    return report.model_copy(update={"teacher_choice": teacher_choice})


def report_for(
    run: TeacherRun,
    *,
    task: TargetTask,
    corpus: Corpus,
    config: TaskConfig,
    hp: HeadHyperParams,
    tests: Sequence[EvalResult],
    outcomes: Mapping[str, DeviceOutcome],
    leakage: LeakageCheck,
    predictions: np.ndarray,  # (n_test,) the teacher's classes for the test split
    payload_bytes: int,
    timings_s: dict[str, float],
    total_s: float,
    teacher_choice: list[TeacherChoice] | None,
) -> BuildReport:
    """The chosen teacher's build, from its records and those of the stages after validation."""
    y_test = task.test.labels
    return assemble_report(
        task=task,
        corpus=corpus,
        config=config,
        teacher=teacher_info(
            run.features,
            run.labelling,
            leakage,
            predictions,
            y_test,
            temperature=config.temperature,
        ),
        teacher_accuracy=float((predictions == y_test).mean()),
        devices=device_results(outcomes),
        chosen=run.chosen,
        candidates=candidate_rows(
            run.candidates,
            run.validation,
            tests,
            payload_bytes=payload_bytes,
            num_classes=task.num_classes,
        ),
        labelling=run.labelling,
        leakage=leakage_info(leakage, encoder=run.features.encoder),
        leakage_flags=leakage.result.num_flagged,
        validation=run.validation,
        payload_bytes=payload_bytes,
        hp=hp,
        timings_s=timings_s,
        total_s=total_s,
        teacher_choice=teacher_choice,
    )
