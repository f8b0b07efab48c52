"""device.json, bench-corpus.json, bench-codec.json, run.json and timings.json (fleet.json:
bench/schema/fleet.py)."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from bench.schema.common import Model


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


class MultitaskRow(Model):
    tasks: int
    ms_per_image: float
    encoder_ms_per_image: float
    heads_ms_per_image: float
    separate_passes_ms_per_image: float


class MultitaskResults(Model):
    """bench/multitask.py: predict latency per image with several installed tasks."""

    encoder: str
    feature_dim: int
    threads: int
    batch_size: int
    images: int
    rows: list[MultitaskRow]
    extra_task_ms_per_image: float
    extra_head_ms_per_image: float
    extra_separate_ms_per_image: float | None = None


class DeviceResults(Model):
    encoder: str
    encoder_images_per_second: dict[str, float]
    tflite: str | None = None
    cache_corpus: CacheCorpus
    warm_cache: WarmCache | None = None
    apply_5000_warm_cache: dict[str, ApplyRun] = Field(default_factory=dict)
    float16_cache_cost: dict[str, Float16Cost] = Field(default_factory=dict)

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
    seeds: list[int] = Field(default_factory=list)
    teacher_encoder: str = "?"
    device: str = "?"
    timings: dict[str, float] = Field(default_factory=dict)
    # per module: the larger of the bench process's own peak and its largest child's (MB)
    peak_rss_mb: dict[str, float] = Field(default_factory=dict)
    total_seconds: float = 0.0
    invocations: int = 1
    errors: dict[str, str] = Field(default_factory=dict)
    reduced: list[str] = Field(default_factory=list)


class Timing(Model):
    """One module's row in timings.json."""

    seconds: float
    error: str | None = None
    # bench.peak_memory: the bench process's peak during the module, and the largest child the
    # module waited for (None: no child raised the run's maximum); absent in older runs
    peak_rss_mb: float | None = None
    child_peak_rss_mb: float | None = None

    @property
    def peak_mb(self) -> float | None:
        """The larger of the two (the README's per-module figure); None if not recorded."""
        if self.peak_rss_mb is None:
            return None
        return max(self.peak_rss_mb, self.child_peak_rss_mb or 0.0)
