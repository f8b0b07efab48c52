"""hetero.json and alternatives.json: one payload on other encoders, other ways to send a task."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from bench.schema.common import DEVICE_PAIR, Model, Paired, Scores, Value


class HeteroRow(Paired):
    device_class: str
    encoder: str
    budget: str
    device: Scores
    oracle: Scores
    relative: Scores

    PAIRS: ClassVar[Mapping[str, tuple[str, str]]] = {
        **DEVICE_PAIR,
        "oracle": ("oracle_accuracy", "oracle_balanced_accuracy"),
        "relative": ("relative_to_oracle", "balanced_relative_to_oracle"),
    }


class HeteroTask(Model):
    summary: list[HeteroRow]
    unavailable: dict[str, str] = Field(default_factory=dict)


class HeteroResults(Model):
    payloads_chosen_for: str
    teacher_encoder: str
    teacher_encoders: list[str] | None = None
    budgets: list[str] | None = None
    budget_limits: dict[str, list[str]] = Field(default_factory=dict)
    max_test_images: int | None = None
    tasks: dict[str, HeteroTask]


# ---------------------------------------------------------------------------------- alternatives


class AltBudget(Paired):
    budget: str
    budget_bytes: int
    plada: Scores
    random: Scores
    images: Scores
    images_count: Value = None
    images_best_format: list[str] = Field(default_factory=list)
    teacher_head_fits: list[str] = Field(default_factory=list)

    PAIRS: ClassVar[Mapping[str, tuple[str, str]]] = {
        "plada": ("plada_auto", "plada_auto_balanced"),
        "random": ("random_reference", "random_reference_balanced"),
        "images": ("images_accuracy", "images_balanced_accuracy"),
    }


class FlSummary(Paired):
    bytes_per_device: int
    device: Scores


class AltSummary(Model):
    budgets: list[AltBudget]
    fl: FlSummary


class HeadRow(Paired):
    precision: str
    bytes: int
    scheme: str = ""
    device: Scores


class HeadWeights(Model):
    encoder: str
    valid_for: str
    rows: list[HeadRow]


class FlRound(Model):
    devices: int
    images_per_device: int


class AltTask(Model):
    summary: AltSummary
    weights: dict[str, HeadWeights]
    fl: list[FlRound]


class AlternativesResults(Model):
    device: str
    teacher_encoder: str
    formats: list[str]
    tasks: dict[str, AltTask]
