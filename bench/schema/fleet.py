"""fleet.json (bench/fleet): one row per fleet size and payload."""

from __future__ import annotations

from pydantic import Field

from bench.schema.common import Model


class WireBytes(Model):
    mean: float
    min: int
    max: int


class ProcessUsage(Model):
    """CPU over a rollout (publish to every device ready) and memory at its end."""

    cpu_s: float = Field(ge=0)
    cpu_percent: float = Field(ge=0)  # of one core, averaged over the window
    rss_mb: float = Field(ge=0)
    peak_rss_mb: float = Field(ge=0)
    rss_per_agent_kb: float  # over the process's own memory before any agent


class ConnectPhase(Model):
    seconds: float
    broker_cpu_s: float
    broker_rss_mb: float
    clients_rss_mb: float
    broker_nofile: int | None = None  # the running broker's open-file limit
    broker_idle_rss_mb: float | None = None  # before any agent connected
    clients_base_rss_mb: float | None = None  # the workers' own, before any agent
    # The slowest worker's scratch install before its agents started (bench/fleet/worker.py)
    worker_warm_up_s: float | None = None


class FleetRun(Model):
    agents: int = Field(ge=1)
    workers: int = Field(ge=1)
    broker: str
    budget_bytes: int
    payload_bytes: int
    kept_images: int
    chunk_bytes: int
    messages: int = Field(ge=1)
    publish_acked_s: float
    first_byte_s: float | None
    ready_first_s: float | None
    ready_median_s: float | None
    ready_p90_s: float | None
    all_ready_s: float | None  # None: some device never got ready (lost > 0)
    time_to_model_median_s: float | None
    results_seen_by_builder_s: float | None
    results_seen: int
    lost: int = Field(ge=0)
    incomplete_devices: int = Field(ge=0)
    duplicate_messages: int = Field(ge=0)
    wire_bytes_per_device: WireBytes
    payload_bytes_per_device: float
    overhead_bytes_per_device: float
    messages_per_device: float
    window_s: float
    broker_usage: ProcessUsage
    client_usage: ProcessUsage
    connect: ConnectPhase
    loadavg_1m: float


class FleetMachine(Model):
    cpu_model: str = "?"
    nproc: int | None = None
    ram_gib: float | None = None
    loadavg_start: float | None = None
    loadavg_end: float | None = None


class FleetSettings(Model):
    workers: int  # at most
    agents_per_worker: int = 0
    switch_interval_s: float
    worker_nice: int = 0
    chunk_bytes: int
    ready_timeout_s: float
    state_on: str
    broker_max_connections: int
    broker_nofile_requested: int | None
    broker_autosave_interval_s: int
    broker_tcp_nodelay: bool


class FleetTarget(Model):
    agents: int
    all_ready_s: float
    lost: int


class FleetResults(Model):
    payload: str
    machine: FleetMachine
    settings: FleetSettings
    target: FleetTarget
    runs: list[FleetRun]
