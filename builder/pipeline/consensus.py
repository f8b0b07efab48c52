"""Which reference images every device class reads the same way (issue 16: choose for the fleet).

A pseudo-label travels to another encoder only if that encoder sees the image as the teacher
does. With several device classes validated, each class gets its own teacher (a softmax
regression on the class's own features of the target's labelled images, L2 chosen once on k
folds of them), and an image *agrees* when every class's teacher gives it the build teacher's
label. The `consensus` strategy (builder.pipeline.select) draws its class quotas from those
images only. Measured with `make bench-fleet`
(the four Lite classes, views on, 3 seeds): chosen in every task and budget, the worst class's
ratio to its own oracle rose from 81 to 91 % (digits 2 KiB), 96 to 99 % (fashion 2 KiB) and
86 to 101 % (clipart 8 KiB).

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


class ClassLabels:
    """Class teachers' labels of the reference corpus, remembered per (class, reference features,
    training rows): a build's teacher runs share the validation splits and, per view, the
    classes' reference features, so each class teacher is fitted once per split and view instead
    of once per teacher encoder. Thread-safe enough for the evaluator's threads (a race fits the
    same teacher twice; CPython's dict keeps one)."""

    def __init__(self) -> None:
        # key -> (the reference array, kept alive so its id stays unique; the labels)
        self._memo: dict[tuple[str, int, bytes], tuple[np.ndarray, np.ndarray]] = {}

    def labels(
        self,
        name: str,
        rows: ClassRows,
        train_rows: np.ndarray,
        train_labels: np.ndarray,  # (n,) the whole train split's
        *,
        num_classes: int,
        l2: float,
        config: TeacherConfig,
    ) -> np.ndarray:  # (N,) int16
        key = (name, id(rows.reference), np.asarray(train_rows, dtype=np.int64).tobytes())
        if key not in self._memo:
            teacher = fit_teacher(
                rows.train[train_rows], train_labels[train_rows], num_classes=num_classes,
                config=config, l2=l2,
            )  # fmt: skip
            self._memo[key] = (rows.reference, teacher.predict(rows.reference).astype(np.int16))
        return self._memo[key][1]


def agreement(
    labels: np.ndarray,  # (N,) the build teacher's pseudo-labels of the reference corpus
    classes: Mapping[str, ClassRows],
    train_labels: np.ndarray,  # (n,) labels of the whole train split
    train_rows: np.ndarray,  # (m,) which of its images the class teachers learn from
    *,
    num_classes: int,
    l2: Mapping[str, float],
    config: TeacherConfig,
    memo: ClassLabels | None = None,
) -> np.ndarray:
    """(N,) bool: every class's teacher gives the image the build teacher's label."""
    memo = memo or ClassLabels()
    agree = np.ones(labels.shape[0], dtype=bool)
    for name, rows in classes.items():
        agree &= memo.labels(
            name, rows, train_rows, train_labels, num_classes=num_classes, l2=l2[name],
            config=config,
        ) == labels  # fmt: skip
    return agree
