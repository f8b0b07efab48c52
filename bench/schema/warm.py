"""builder_warm.json (bench/builder_warm.py) and device_budget.json (bench/device_budget.py):
the builder on a warm cache and the device on a Raspberry-Pi-4-like budget."""

from __future__ import annotations

from pydantic import Field

from bench.schema.common import Model


class BuildOutcome(Model):
    """What a build chose and measured: equal outcomes before and after a change mean the change
    kept the results."""

    teacher: str
    strategy: str
    num_indices: int
    payload_bytes: int
    view: str | None = None
    val_accuracy: list[float] = Field(default_factory=list)
    teacher_accuracy: float
    device_accuracy: float
    leakage_flags: int
    selection_sha256: str


class WarmBuild(Model):
    wall_s: float | None = None
    cpu_s: float | None = None
    total_s: float | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    peak_rss_mb: float | None = None
    load_average_1min: float | None = None
    result: BuildOutcome | None = None
    error: str | None = None


class WarmMachine(Model):
    cpu_model: str = "unknown"
    nproc: int | None = None


class WarmRun(Model):
    """One invocation of bench.builder_warm: one checkout's CLI, every task and setting."""

    label: str
    commit: str | None = None
    machine: WarmMachine = WarmMachine()
    budget: str
    views: str = "auto"
    teachers: dict[str, str]
    runs: dict[str, WarmBuild]  # "<task>/<one|two>/<first|again>"


class BuilderWarmResults(Model):
    runs: dict[str, WarmRun]  # by label: "before", "after"


class BudgetApply(Model):
    payload_to_model_s: float | None = None
    train_s: float | None = None
    features_computed: int | None = None
    peak_rss_mb: float | None = None
    process_cpu_s: float | None = None
    all_runs_s: list[float] = Field(default_factory=list)
    error: str | None = None


class BudgetRow(Model):
    kept_images: int
    cap_mb: int | None = None
    warm: BudgetApply
    cold: BudgetApply


class BudgetPredict(Model):
    images: int | None = None
    single_ms_median: float | None = None
    single_ms_p95: float | None = None
    batched_ms_per_image: float | None = None
    batch_size: int | None = None
    error: str | None = None


class BudgetConstraint(Model):
    cpu: str
    memory: str
    cap_mb: int


class LoadRange(Model):
    start: float | None = None
    end: float | None = None


class BudgetBefore(Model):
    """The apply runs of another checkout's agent (the code before a change)."""

    code: str
    apply: list[BudgetRow]


class DeviceBudgetResults(Model):
    machine: WarmMachine = WarmMachine()
    load_average_1min: LoadRange = LoadRange()
    constraint: BudgetConstraint
    settings: dict[str, str | int | bool]
    corpus_images: int
    apply: list[BudgetRow]
    predict: BudgetPredict
    before: BudgetBefore | None = None
