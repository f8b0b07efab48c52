"""bench.accuracy's per-unit checkpoints, read back to resume an interrupted sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError

from bench.schema.common import Model


class SeedRow(Model):
    model_config = ConfigDict(extra="allow", frozen=True)

    seed: int


class BudgetSeedRow(SeedRow):
    budget: str


class AccuracyCheckpoint(Model):
    """A (task, seed) unit of bench.accuracy written as it goes, read back to resume; every row
    is kept as written (rows are checked for the keys resuming matches on)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    oracle_per_seed: list[SeedRow] = Field(default_factory=list)
    ratio_runs: list[SeedRow] = Field(default_factory=list)
    auto_runs: list[BudgetSeedRow] = Field(default_factory=list)
    budget_candidates: list[BudgetSeedRow] = Field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> dict[str, Any]:
        try:
            return cls.model_validate_json(path.read_bytes()).model_dump()
        except ValidationError as exc:
            raise ValueError(f"{path}: {exc}") from exc
