"""The teacher stage: fit the teacher on labelled features, then pseudo-label and score every
reference image. The build runs it once on the whole train split; --auto's validation once per
fold, on the fold's training part only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builder.pipeline.scores import ReferenceScores, score_reference
from builder.pipeline.teacher import TeacherConfig, fit_teacher
from builder.pipeline.teachers.model import TeacherModel


@dataclass(frozen=True)
class Labelling:
    teacher: TeacherModel
    scores: ReferenceScores  # of every reference image, from this teacher


def label_reference(
    train_features: np.ndarray,  # (n, D) teacher-encoder features of labelled images
    train_labels: np.ndarray,  # (n,) int64
    reference_features: np.ndarray,  # (N, D) the corpus under the same encoder
    *,
    num_classes: int,
    temperature: float,
    config: TeacherConfig | None = None,
    l2: float | None = None,
) -> Labelling:
    teacher = fit_teacher(
        train_features, train_labels, num_classes=num_classes, config=config, l2=l2
    )
    return labelling_for(
        teacher, train_features, train_labels, reference_features, temperature=temperature
    )


def labelling_for(
    teacher: TeacherModel,
    train_features: np.ndarray,
    train_labels: np.ndarray,
    reference_features: np.ndarray,
    *,
    temperature: float,
) -> Labelling:
    """Scores of every reference image from a teacher already fitted (any kind)."""
    scores = score_reference(
        teacher.logits(reference_features),
        temperature=temperature,
        reference_features=reference_features,
        target_features=train_features,
        target_labels=train_labels,
    )
    return Labelling(teacher, scores)
