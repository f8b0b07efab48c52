"""What every results model shares: strict-enough records, mean/spread stats, metric pairs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator

BALANCED_TASKS = frozenset({"clipart"})  # imbalanced classes: read balanced accuracy


def metric_name(task: str) -> str:
    return "balanced accuracy" if task in BALANCED_TASKS else "accuracy"


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Stat(Model):
    """Mean and sample standard deviation over seeds (bench._common.mean_spread)."""

    mean: float | None = None
    sd: float | None = None
    n: int = 1


Value = Stat | float | None


class Scores(Model):
    """One measurement as plain accuracy and as balanced accuracy."""

    accuracy: Value = None
    balanced_accuracy: Value = None

    def of(self, task: str) -> Value:
        """The one to read for `task` (balanced for imbalanced tasks)."""
        return self.balanced_accuracy if task in BALANCED_TASKS else self.accuracy


def nest_pairs(data: Any, pairs: Mapping[str, tuple[str, str]]) -> Any:
    """{"x_accuracy": a, "x_balanced_accuracy": b} -> {"x": {"accuracy": a, ...}}."""
    if not isinstance(data, dict):
        return data
    data = dict(data)
    for name, (plain, balanced) in pairs.items():
        if plain in data or balanced in data:
            data[name] = {
                "accuracy": data.pop(plain, None),
                "balanced_accuracy": data.pop(balanced, None),
            }
    return data


DEVICE_PAIR = {"device": ("accuracy", "balanced_accuracy")}


class Paired(Model):
    """A row whose flat metric pairs nest into Scores: PAIRS maps each Scores field to the
    (plain, balanced) keys the JSON file has for it."""

    PAIRS: ClassVar[Mapping[str, tuple[str, str]]] = DEVICE_PAIR

    @model_validator(mode="before")
    @classmethod
    def _nest(cls, data: Any) -> Any:
        return nest_pairs(data, cls.PAIRS)
