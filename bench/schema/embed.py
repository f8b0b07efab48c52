"""embed_pipeline.json (bench/embed_pipeline.py): the embedding pipeline vs the bare session."""

from __future__ import annotations

from pydantic import Field

from bench.schema.common import Model


class Way(Model):
    """One way of embedding the sample (pipeline, bare defaults, bare tuned), over its runs."""

    images_per_s: float  # best run
    median_images_per_s: float | None = None
    images_per_cpu_s: float | None = None  # median: images per second of user + system time
    sys_share: float  # system time / CPU time over all runs
    minor_faults_per_image: float | None = None


class EncoderRow(Model):
    encoder: str
    input_size: int
    pipeline: Way
    bare_default: Way
    bare_tuned: Way
    ratio_to_best_bare: float
    cpu_ratio_to_best_bare: float | None = None
    paired_ratio: float | None = None
    max_abs_diff_to_bare: float | None = None
    meets_targets: bool


class Sample(Model):
    images: int
    how: str


class EmbedMachine(Model):
    cpus: int | None = None
    loadavg_start: float | None = None
    loadavg_end: float | None = None


class EmbedResults(Model):
    sample: Sample
    batch_size: int
    run_rows: int
    repeats: int
    machine: EmbedMachine = EmbedMachine()
    encoders: list[EncoderRow] = Field(default_factory=list)
    seconds: float | None = None
