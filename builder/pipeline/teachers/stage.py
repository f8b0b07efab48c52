"""The build's teacher-search stage: embed augmented train images with every teacher encoder,
search the candidates (teachers.choose) and put the chosen one's features in the shape the rest of
the pipeline takes (a TaskFeatures in the teacher's own feature space, and the recipe that refits
it on validation folds)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from builder.features.sources import FeatureSource, TaskFeatures
from builder.pipeline.teachers.augment import augment_images
from builder.pipeline.teachers.choose import (
    ChoiceConfig,
    TeacherData,
    TeacherRecipe,
    TeacherSearch,
    search_teacher,
)


@dataclass(frozen=True)
class SearchedTeacher:
    search: TeacherSearch
    recipe: TeacherRecipe

    @property
    def redundant(self) -> bool:
        """True when the choice is one encoder's plain softmax regression: the build already
        runs that teacher for every encoder, so the search adds no run of its own."""
        spec = self.recipe.spec
        return len(spec.encoders) == 1 and spec.kind == "softmax-regression" and not spec.augment


def search_stage(
    sources: Sequence[FeatureSource],
    teachers: Sequence[TaskFeatures],
    train_images: Sequence[Image.Image],
    train_labels: np.ndarray,
    *,
    num_classes: int,
    augment: bool,
    config: ChoiceConfig,
) -> SearchedTeacher:
    """Augmented copies go through each teacher's own FeatureSource: the same preprocessing and
    encoder as the target's images."""
    data = TeacherData(
        encoders=tuple(t.encoder for t in teachers),
        train=tuple(t.train for t in teachers),
        labels=np.asarray(train_labels, dtype=np.int64),
        num_classes=num_classes,
    )
    if augment:
        copies = augment_images(train_images)
        data = TeacherData(
            encoders=data.encoders,
            train=data.train,
            labels=data.labels,
            num_classes=num_classes,
            augmented=tuple(s.image_features(copies.images) for s in sources),
            aug_ops=copies.ops,
            aug_source=copies.source,
        )
    search = search_teacher(data, config)
    return SearchedTeacher(search, search.recipe())


def teacher_features(searched: SearchedTeacher, teachers: Sequence[TaskFeatures]) -> TaskFeatures:
    """The corpus and both splits in the chosen teacher's feature space."""
    recipe = searched.recipe
    mine = [teachers[i] for i in recipe.spec.encoders]
    if not recipe.concatenated:
        return mine[0]
    return TaskFeatures(
        encoder="+".join(recipe.encoders),
        reference=recipe.features([t.reference for t in mine]),
        train=recipe.train,
        test=recipe.features([t.test for t in mine]),
    )


def candidate_test_accuracies(
    searched: SearchedTeacher, teachers: Sequence[TaskFeatures], test_labels: np.ndarray
) -> list[float]:
    """Every candidate refitted on the whole train split and scored on test: for the report
    only (the choice never sees it)."""
    out = []
    for scored in searched.search.scored:
        recipe = TeacherRecipe(searched.search.data, scored.spec, searched.search.config)
        test = recipe.features([teachers[i].test for i in scored.spec.encoders])
        out.append(float(np.mean(recipe.fit().predict(test) == test_labels)))
    return out
