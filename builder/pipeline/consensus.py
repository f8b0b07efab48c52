"""Which reference images every device class reads the same way (issue 16: choose for the fleet).

A pseudo-label travels to another encoder only if that encoder sees the image as the teacher
does. With several device classes validated, each class gets its own teacher (a softmax
regression on the class's own features of the target's labelled images, L2 chosen once on k
folds of them), and an image *agrees* when every class's teacher gives it the build teacher's
label. The `consensus` strategy (builder.pipeline.select) draws its class quotas from those
images only. Measured on digits under the builder's view with the four Lite classes (seed 0,
random-balanced quotas): the worst class's ratio to its own oracle 0.70 (1,650 images by the
averaged teachers' labels) against 0.91 (1,424 agreeing images); `--auto` validates it beside the
other strategies, so it is chosen only where it validates best.

Validation refits every class teacher on each split's training part, so a held-out image never
shapes the agreement its own split is scored with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from builder.pipeline.teacher import TeacherConfig, choose_l2, fit_teacher


class ClassRows(Protocol):
    """A device class's features: the target's train split and the reference corpus."""

    @property
    def train(self) -> np.ndarray: ...  # (n, D)

    @property
    def reference(self) -> np.ndarray: ...  # (N, D)


def class_l2(
    classes: Mapping[str, ClassRows], labels: np.ndarray, *, num_classes: int, config: TeacherConfig
) -> dict[str, float]:
    """Each class teacher's L2, chosen once on k folds of the whole train split (the same grid
    and folds as the build teacher's); the split teachers reuse it rather than repeat the path."""
    return {
        name: choose_l2(rows.train, labels, num_classes=num_classes, config=config)
        for name, rows in classes.items()
    }


def agreement(
    labels: np.ndarray,  # (N,) the build teacher's pseudo-labels of the reference corpus
    classes: Mapping[str, ClassRows],
    train_labels: np.ndarray,  # (m,) labels of the rows in train_rows
    train_rows: np.ndarray,  # (m,) which train images the class teachers learn from
    *,
    num_classes: int,
    l2: Mapping[str, float],
    config: TeacherConfig,
) -> np.ndarray:
    """(N,) bool: every class's teacher gives the image the build teacher's label."""
    agree = np.ones(labels.shape[0], dtype=bool)
    for name, rows in classes.items():
        teacher = fit_teacher(
            rows.train[train_rows], train_labels, num_classes=num_classes, config=config,
            l2=l2[name],
        )  # fmt: skip
        agree &= teacher.predict(rows.reference) == labels
    return agree
