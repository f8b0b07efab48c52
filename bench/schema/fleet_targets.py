"""fleet_targets.json: `--auto` choosing for the four Lite device classes with views on
(`make bench`'s fleet_targets module, bench/fleet_choice.py), the configuration issue 16's
targets are set in."""

from __future__ import annotations

from pydantic import Field

from bench.schema.common import BALANCED_TASKS, Model


class FleetClassRow(Model):
    """One device class in one build: validated on train folds (val_ratio; None for a class the
    build did not validate, applied afterwards by bench.fleet_unvalidated), simulated on the test
    split."""

    val_ratio: float | None = None
    test_accuracy: float
    test_ratio: float | None = None
    test_balanced_accuracy: float | None = None
    test_balanced_ratio: float | None = None
    oracle_accuracy: float | None = None
    oracle_balanced_accuracy: float | None = None

    def ratio(self, task: str) -> float | None:
        """Device / its own oracle in the task's metric (balanced for imbalanced tasks)."""
        return self.test_balanced_ratio if task in BALANCED_TASKS else self.test_ratio

    def accuracy(self, task: str) -> float | None:
        return self.test_balanced_accuracy if task in BALANCED_TASKS else self.test_accuracy

    def oracle(self, task: str) -> float | None:
        return self.oracle_balanced_accuracy if task in BALANCED_TASKS else self.oracle_accuracy


class FleetBuildRow(Model):
    """One `plada-build task --auto --devices ...` run and the choice it made."""

    task: str
    budget: str
    seed: int
    mode: str
    strategy: str
    keep: int
    payload_bytes: int
    view: str | None = None
    teacher: str
    teacher_accuracy: float | None = None
    teacher_balanced_accuracy: float | None = None
    classes: dict[str, FleetClassRow]
    worst_class: str
    worst_val_ratio: float
    worst_test_class: str | None = None
    chosen_std: float | None = None
    wall_s: float

    def teacher_score(self) -> float | None:
        if self.task in BALANCED_TASKS:
            return self.teacher_balanced_accuracy
        return self.teacher_accuracy


class FailedBuild(Model):
    """A build of the fleet module that exited non-zero (the others still ran)."""

    task: str
    budget: str
    seed: int
    error: str


class FleetTargetsResults(Model):
    devices: str  # comma-separated validated classes, the default class first
    views: str | None = None
    applied: list[str] = Field(default_factory=list)  # classes applied to, not validated
    max_test_images: int | None = None  # the test subset of the applied classes
    rows: list[FleetBuildRow] = Field(default_factory=list)
    failed: list[FailedBuild] = Field(default_factory=list)
    unavailable: dict[str, str] = Field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return [name.strip() for name in self.devices.split(",") if name.strip()]
