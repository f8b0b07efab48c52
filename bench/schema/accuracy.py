"""accuracy.json (bench.accuracy): per task, the keep-ratio sweep and --auto at byte budgets."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from bench.schema.common import DEVICE_PAIR, Model, Scores, Value, nest_pairs


class CodecSizes(Model):
    paper_bytes: int
    best_bytes: int
    bound_bytes: int


class RatioRun(Model):
    ratio: float
    keep: int
    codec: CodecSizes | None = None


class RatioRow(Model):
    setting: str
    ratio: float
    keep: int
    payload_bytes: Value
    device: Scores = Scores()

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return nest_pairs(data, DEVICE_PAIR)


class CapRow(Model):
    """One setting at the largest keep under a byte budget (mean over seeds)."""

    keep: Value = None
    payload_bytes: Value = None
    device: Scores = Scores()

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return nest_pairs(data, DEVICE_PAIR)


class BudgetRow(Model):
    budget: str
    auto_choices: list[str] = Field(default_factory=list)
    keep: Value = None
    payload_bytes: Value = None
    device: Scores = Scores()
    seconds: Value = None
    settings_at_cap: dict[str, CapRow] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return nest_pairs(data, DEVICE_PAIR)


class AccuracySummary(Model):
    teacher: Scores
    oracle: Scores
    ratios: list[RatioRow]
    budgets: list[BudgetRow]

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return nest_pairs(
            data,
            {
                "teacher": ("teacher_accuracy", "teacher_balanced_accuracy"),
                "oracle": ("oracle_accuracy", "oracle_balanced_accuracy"),
            },
        )


class AutoRun(Model):
    peak_rss_mb: float


class AccuracyTask(Model):
    num_classes: int
    train_images: int
    test_images: int
    ratio_runs: list[RatioRun] = Field(default_factory=list)
    auto_runs: list[AutoRun] = Field(default_factory=list)
    summary: AccuracySummary


class CorpusSize(Model):
    size: int


class AccuracyResults(Model):
    device: str
    teacher_encoder: str
    corpus: CorpusSize
    seeds: list[int]
    tasks: dict[str, AccuracyTask]
