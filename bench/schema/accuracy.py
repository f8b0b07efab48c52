"""accuracy.json (bench.accuracy): per task, the keep-ratio sweep and --auto at byte budgets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import Field

from bench.schema.common import Model, Paired, Scores, Value


class CodecSizes(Model):
    paper_bytes: int
    best_bytes: int
    bound_bytes: int


class RatioRun(Model):
    ratio: float
    keep: int
    codec: CodecSizes | None = None


class RatioRow(Paired):
    setting: str
    ratio: float
    keep: int
    payload_bytes: Value
    device: Scores = Scores()


class CapRow(Paired):
    """One setting at the largest keep under a byte budget (mean over seeds)."""

    keep: Value = None
    payload_bytes: Value = None
    device: Scores = Scores()


class BudgetRow(Paired):
    budget: str
    auto_choices: list[str] = Field(default_factory=list)
    keep: Value = None
    payload_bytes: Value = None
    device: Scores = Scores()
    seconds: Value = None
    settings_at_cap: dict[str, CapRow] = Field(default_factory=dict)


class AccuracySummary(Paired):
    teacher: Scores
    oracle: Scores
    ratios: list[RatioRow]
    budgets: list[BudgetRow]

    PAIRS: ClassVar[Mapping[str, tuple[str, str]]] = {
        "teacher": ("teacher_accuracy", "teacher_balanced_accuracy"),
        "oracle": ("oracle_accuracy", "oracle_balanced_accuracy"),
    }


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
