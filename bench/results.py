"""The benchmark results as the renderer reads them back: one pydantic model per JSON file.

The files keep the flat keys the modules have always written (`oracle_accuracy` beside
`oracle_balanced_accuracy`, `plada_auto` beside `plada_auto_balanced`, ...); the models nest each
such pair into one `Scores` record, so the renderer asks `row.oracle.of(task)` instead of
switching between five naming schemes. A section that failed is `{"error": ...}`, one that did
not run is missing: both stay visible to the renderer as SectionError / None. Keys the renderer
does not read are ignored; a key it reads with the wrong type is named by pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

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


def _nest(data: Any, pairs: Mapping[str, tuple[str, str]]) -> Any:
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


_DEVICE = {"device": ("accuracy", "balanced_accuracy")}


# ---------------------------------------------------------------------------------- accuracy


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
        return _nest(data, _DEVICE)


class CapRow(Model):
    """One setting at the largest keep under a byte budget (mean over seeds)."""

    keep: Value = None
    payload_bytes: Value = None
    device: Scores = Scores()

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return _nest(data, _DEVICE)


class BudgetRow(Model):
    budget: str
    auto_choices: list[str] = []
    keep: Value = None
    payload_bytes: Value = None
    device: Scores = Scores()
    seconds: Value = None
    settings_at_cap: dict[str, CapRow] = {}

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return _nest(data, _DEVICE)


class AccuracySummary(Model):
    teacher: Scores
    oracle: Scores
    ratios: list[RatioRow]
    budgets: list[BudgetRow]

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return _nest(
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
    ratio_runs: list[RatioRun] = []
    auto_runs: list[AutoRun] = []
    summary: AccuracySummary


class CorpusSize(Model):
    size: int


class AccuracyResults(Model):
    device: str
    teacher_encoder: str
    corpus: CorpusSize
    seeds: list[int]
    tasks: dict[str, AccuracyTask]


# ---------------------------------------------------------------------------------- hetero


class HeteroRow(Model):
    device_class: str
    encoder: str
    budget: str
    device: Scores
    oracle: Scores
    relative: Scores

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return _nest(
            data,
            {
                **_DEVICE,
                "oracle": ("oracle_accuracy", "oracle_balanced_accuracy"),
                "relative": ("relative_to_oracle", "balanced_relative_to_oracle"),
            },
        )


class HeteroTask(Model):
    summary: list[HeteroRow]
    unavailable: dict[str, str] = {}


class HeteroResults(Model):
    payloads_chosen_for: str
    teacher_encoder: str
    teacher_encoders: list[str] | None = None
    budgets: list[str] | None = None
    budget_limits: dict[str, list[str]] = {}
    max_test_images: int | None = None
    tasks: dict[str, HeteroTask]


# ---------------------------------------------------------------------------------- alternatives


class AltBudget(Model):
    budget: str
    budget_bytes: int
    plada: Scores
    random: Scores
    images: Scores
    images_count: Value = None
    images_best_format: list[str] = []
    teacher_head_fits: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return _nest(
            data,
            {
                "plada": ("plada_auto", "plada_auto_balanced"),
                "random": ("random_reference", "random_reference_balanced"),
                "images": ("images_accuracy", "images_balanced_accuracy"),
            },
        )


class FlSummary(Model):
    bytes_per_device: int
    device: Scores

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return _nest(data, _DEVICE)


class AltSummary(Model):
    budgets: list[AltBudget]
    fl: FlSummary


class HeadRow(Model):
    precision: str
    bytes: int
    scheme: str = ""
    device: Scores

    @model_validator(mode="before")
    @classmethod
    def _pairs(cls, data: Any) -> Any:
        return _nest(data, _DEVICE)


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


# ---------------------------------------------------------------------------------- device, corpus


class ApplyRun(Model):
    kept_images: int
    payload_to_model_seconds: float
    train_seconds: float
    peak_rss_mb: float


class WarmCache(Model):
    images: int
    seconds: float | None = None


class CacheCorpus(Model):
    images: int
    is_ref_v1: bool


class Float16Cost(Model):
    delta_points: float


class DeviceResults(Model):
    encoder: str
    encoder_images_per_second: dict[str, float]
    tflite: str | None = None
    cache_corpus: CacheCorpus
    warm_cache: WarmCache | None = None
    apply_5000_warm_cache: dict[str, ApplyRun] = {}
    float16_cache_cost: dict[str, Float16Cost] = {}

    @model_validator(mode="before")
    @classmethod
    def _warm_cache_apart(cls, data: Any) -> Any:
        """`apply_5000_warm_cache` holds the backends' runs and, under `warm_cache`, the cache."""
        if isinstance(data, dict) and isinstance(data.get("apply_5000_warm_cache"), dict):
            runs = dict(data["apply_5000_warm_cache"])
            data = {**data, "warm_cache": runs.pop("warm_cache", None)}
            data["apply_5000_warm_cache"] = {k: v for k, v in runs.items() if isinstance(v, dict)}
        return data


class Rate(Model):
    image_per_s: float | None = None
    images_per_s: float | None = None
    build_s: float | None = None


class CorpusCount(Model):
    num_images: int


class CorpusResults(Model):
    corpus: CorpusCount
    random_reads: Rate = Rate()
    verify: Rate = Rate()
    build: Rate = Rate()


class CodecRow(Model):
    model_config = ConfigDict(extra="allow", frozen=True)  # bench.codec.render_table reads them

    case: str
    best_bytes: int


# ---------------------------------------------------------------------------------- fleet, run


class WireBytes(Model):
    mean: float
    min: int
    max: int


class FleetRun(Model):
    agents: int
    messages: int
    payload_bytes: int
    publish_acked_s: float
    ready_median_s: float
    all_ready_s: float
    results_seen_by_builder_s: float
    wire_bytes_per_device: WireBytes


class FleetResults(Model):
    payload: str
    runs: list[FleetRun]


class Machine(Model):
    cpu_model: str = "?"
    nproc: int | None = None
    ram_gib: float | None = None
    python: str = "?"
    loadavg_start: float | None = None


class RunMeta(Model):
    """run.json: how the results were produced (keys the renderer does not read are kept, so a
    re-render that adds notes writes them back)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    date: str = "?"
    git_commit: str | None = None
    machine: Machine = Machine()
    data: str = "?"
    corpus_size: int | None = None
    seeds: list[int] = []
    teacher_encoder: str = "?"
    device: str = "?"
    timings: dict[str, float] = {}
    total_seconds: float = 0.0
    invocations: int = 1
    errors: dict[str, str] = {}
    reduced: list[str] = []


class Timing(Model):
    """One module's row in timings.json."""

    seconds: float
    error: str | None = None


# ---------------------------------------------------------------------------------- all of it


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
    corpus: CorpusResults | SectionError | None = None
    fleet: FleetResults | SectionError | None = None

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
            corpus=section(CorpusResults, results.get("corpus"), "corpus"),
            fleet=section(FleetResults, results.get("fleet"), "fleet"),
        )


# ---------------------------------------------------------------------------------- checkpoints


class SeedRow(Model):
    model_config = ConfigDict(extra="allow", frozen=True)

    seed: int


class BudgetSeedRow(SeedRow):
    budget: str


class AccuracyCheckpoint(Model):
    """A (task, seed) unit of bench.accuracy written as it goes, read back to resume; every row
    is kept as written (rows are checked for the keys resuming matches on)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    oracle_per_seed: list[SeedRow] = []
    ratio_runs: list[SeedRow] = []
    auto_runs: list[BudgetSeedRow] = []
    budget_candidates: list[BudgetSeedRow] = []

    @classmethod
    def read(cls, path: Path) -> dict[str, Any]:
        try:
            return cls.model_validate_json(path.read_bytes()).model_dump()
        except ValidationError as exc:
            raise ValueError(f"{path}: {exc}") from exc
