"""What the fleet benchmark's coordinator and its worker processes say to each other: one JSON
object per line, commands on the worker's stdin, events on its stdout. Every message is read back
through a pydantic model, so a malformed line names its bad field."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceLogin(Record):
    device_id: str
    password_file: Path


class WorkerSpec(Record):
    """Everything a worker needs to run its share of the fleet (written to a file, 0600)."""

    worker: int = Field(ge=0)
    broker_url: str
    group: str
    public_key: Path
    fingerprint: str
    corpus_size: int = Field(ge=1)
    state_root: Path
    devices: list[DeviceLogin]
    connect_timeout_s: float = Field(default=300.0, gt=0)
    switch_interval_s: float = Field(default=0.05, gt=0)  # sys.setswitchinterval (worker.py)
    nice: int = Field(default=5, ge=0, le=19)  # added to the worker's niceness (worker.py)


class AwaitCommand(Record):
    """Wait until every agent of the worker is ready with `version` (or `timeout_s` passes)."""

    cmd: Literal["await"] = "await"
    version: int
    timeout_s: float = Field(gt=0)


class ReportCommand(Record):
    """Read every agent's own record (its trial log) of these payloads."""

    cmd: Literal["report"] = "report"
    payload_ids: list[str]


class StopCommand(Record):
    cmd: Literal["stop"] = "stop"


Command = AwaitCommand | ReportCommand | StopCommand


class Connected(Record):
    event: Literal["connected"] = "connected"
    agents: int
    seconds: float  # its agents' start to all connected
    warm_up_s: float  # the scratch install before (worker.py)
    base_rss_mb: float  # the worker's resident memory after the warm-up, before any agent


class Ready(Record):
    event: Literal["ready"] = "ready"
    version: int
    ready: int
    not_ready: list[str]


class PayloadRecord(Record):
    """One device's trial-log record of one payload (agent.triallog.TaskSummary)."""

    payload_id: str
    outcome: str | None = None  # None: the device has no record of it (lost)
    messages: int = 0
    payload_bytes: int = 0
    overhead_bytes: int = 0
    first_byte_at: float | None = None
    ready_at: float | None = None


class DeviceReport(Record):
    device_id: str
    payloads: list[PayloadRecord]


class Report(Record):
    event: Literal["report"] = "report"
    devices: list[DeviceReport]


class Stopped(Record):
    event: Literal["stopped"] = "stopped"
    failures: list[str]  # agents whose loop let an exception out, or did not stop in time


class CommandLine(Record):
    """A line on the worker's stdin."""

    command: Command = Field(discriminator="cmd")


class EventLine(Record):
    """A line on the worker's stdout."""

    event: Connected | Ready | Report | Stopped = Field(discriminator="event")
