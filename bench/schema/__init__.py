"""The benchmark results as they are read back: one pydantic model per JSON file.

The files keep the flat keys the modules have always written (`oracle_accuracy` beside
`oracle_balanced_accuracy`, `plada_auto` beside `plada_auto_balanced`, ...); the models nest each
such pair into one `Scores` record, so the renderer asks `row.oracle.of(task)` instead of
switching between five naming schemes. A section that failed is `{"error": ...}`, one that did
not run is missing: both stay visible to the renderer as SectionError / None. Keys the renderer
does not read are ignored; a key it reads with the wrong type is named by pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from bench.schema.accuracy import AccuracyResults
from bench.schema.common import Model
from bench.schema.comparisons import AlternativesResults, HeteroResults
from bench.schema.corpus_scale import CorpusScaleResults
from bench.schema.embed import EmbedResults
from bench.schema.fleet import FleetResults
from bench.schema.fleet_targets import FleetTargetsResults
from bench.schema.system import (
    CodecRow,
    CorpusResults,
    DeviceResults,
    MultitaskResults,
    RunMeta,
)
from bench.schema.warm import BuilderWarmResults, DeviceBudgetResults


class SectionError(Model):
    """A module that failed: its error, shown in place of its section."""

    error: str


M = TypeVar("M", bound=Model)


def section(kind: type[M], data: Any, name: str) -> M | SectionError | None:
    """The typed section, its error record, or None (not run); ValueError names a bad key."""
    if data is None:
        return None
    if isinstance(data, dict) and "error" in data:
        return SectionError(error=str(data["error"]))
    try:
        return kind.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"bench results {name}: {exc}") from exc


class BenchResults(Model):
    meta: RunMeta = RunMeta()
    accuracy: AccuracyResults | SectionError | None = None
    hetero: HeteroResults | SectionError | None = None
    alternatives: AlternativesResults | SectionError | None = None
    codec: list[CodecRow] | SectionError | None = None
    device: DeviceResults | SectionError | None = None
    multitask: MultitaskResults | SectionError | None = None
    corpus: CorpusResults | SectionError | None = None
    fleet: FleetResults | SectionError | None = None
    embed: EmbedResults | SectionError | None = None
    builder_warm: BuilderWarmResults | SectionError | None = None
    budget: DeviceBudgetResults | SectionError | None = None
    corpus_scale: CorpusScaleResults | SectionError | None = None
    fleet_targets: FleetTargetsResults | SectionError | None = None

    @classmethod
    def parse(cls, results: Mapping[str, Any]) -> BenchResults:
        codec = results.get("codec")
        return cls(
            meta=RunMeta.model_validate(results.get("meta") or {}),
            accuracy=section(AccuracyResults, results.get("accuracy"), "accuracy"),
            hetero=section(HeteroResults, results.get("hetero"), "hetero"),
            alternatives=section(AlternativesResults, results.get("alternatives"), "alternatives"),
            codec=(
                [CodecRow.model_validate(row) for row in codec]
                if isinstance(codec, list)
                else SectionError(error=str(codec["error"]))
                if isinstance(codec, dict) and "error" in codec
                else None
            ),
            device=section(DeviceResults, results.get("device"), "device"),
            multitask=section(MultitaskResults, results.get("multitask"), "multitask"),
            corpus=section(CorpusResults, results.get("corpus"), "corpus"),
            fleet=section(FleetResults, results.get("fleet"), "fleet"),
            embed=section(EmbedResults, results.get("embed"), "embed"),
            builder_warm=section(BuilderWarmResults, results.get("builder_warm"), "builder_warm"),
            budget=section(DeviceBudgetResults, results.get("budget"), "budget"),
            corpus_scale=section(CorpusScaleResults, results.get("corpus_scale"), "corpus_scale"),
            fleet_targets=section(
                FleetTargetsResults, results.get("fleet_targets"), "fleet_targets"
            ),
        )
