"""corpus_scale.json (bench/corpus_scale.py): one row per corpus size, one record per stage."""

from __future__ import annotations

from pydantic import Field

from bench.schema.common import Model


class Measured(Model):
    """One child process under /usr/bin/time: wall, CPU and peak resident memory."""

    command: str
    wall_s: float = Field(ge=0)
    user_s: float = Field(ge=0)
    sys_s: float = Field(ge=0)
    peak_rss_mb: float = Field(ge=0)
    loadavg_1m: float  # at the start of the stage
    git_commit: str | None = None  # of the code that ran this stage


class BuildStage(Measured):
    fingerprint: str
    bytes_on_disk: int
    images_per_s: float


class VerifyStage(Measured):
    ok: bool
    images_per_s: float


class ReadsStage(Measured):
    num_reads: int
    open_s: float
    images_per_s: float  # random `image()` (decode)
    bytes_per_s: float  # random `read_bytes`


class EmbedStage(Measured):
    images_per_s: float
    feature_bytes: int  # features.npy on disk


class BuilderStage(Measured):
    kept: int
    payload_bytes: int
    device_accuracy: float | None = None
    stage_seconds: dict[str, float] = Field(default_factory=dict)


class ApplyStage(Measured):
    kept: int
    features_computed: int
    payload_to_model_s: float  # in-process, from the agent's own report
    train_s: float
    rss_mb_of_process: float  # VmHWM of the agent process itself (bench._rss)


class SizeRow(Model):
    images: int
    build: BuildStage | None = None
    verify: VerifyStage | None = None
    reads: ReadsStage | None = None
    embed: EmbedStage | None = None
    builder: BuilderStage | None = None
    apply_cold: ApplyStage | None = None
    apply_warm: ApplyStage | None = None


class Fit(Model):
    """value ~ slope * images + intercept over the measured sizes, and its value at `at_images`."""

    what: str
    unit: str
    slope: float
    intercept: float
    at_images: int
    value: float
    points: int


class ScaleMachine(Model):
    cpu_model: str = "?"
    nproc: int | None = None
    ram_gib: float | None = None
    loadavg_start: float | None = None
    loadavg_end: float | None = None


class ScaleSettings(Model):
    base_corpus: str
    base_fingerprint: str
    seed: int
    encoder: str
    feature_dim: int
    task: str
    strategy: str
    kept: int


class ScaleTargets(Model):
    builder_peak_rss_mb: float = 8 * 1024
    apply_warm_s: float = 3.0
    apply_warm_rss_mb: float = 300.0


class CorpusScaleResults(Model):
    date: str
    git_commit: str | None = None
    machine: ScaleMachine
    settings: ScaleSettings
    targets: ScaleTargets = ScaleTargets()
    sizes: list[SizeRow]
    extrapolation: list[Fit] = Field(default_factory=list)
