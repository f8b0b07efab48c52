"""The field-trial report: one validated record, written as JSON and read back the same way.

Per stage (one way of delivering the task: ``plada``, ``images``, ``weights``, later a rollout or
a link drop) one row per device: what the kernel counted on its link in each direction, the bytes
the delivery itself carried (payload) and the MQTT framing around them, the receiving side's own
count, TCP troubles, time to ready, and accuracy where it was measured. ``TrialReport.load`` names
the bad field of a report that does not validate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from builder.fleet.rollout_record import RolloutRecord
from tools.trial.errors import TrialRunError

REPORT_VERSION = 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceInfo(_Record):
    name: str
    device_class: str
    encoder: str
    profile: str


class DeviceRow(_Record):
    device: str
    device_class: str
    profile: str
    delivered: bool  # the delivery reached the device within the stage's time limit
    payload_bytes: int  # what the delivery carries: the task payload, images pack or head
    framing_bytes: int  # MQTT framing around it (PUBLISH header and PUBACK)
    device_counted_bytes: int | None  # the receiver's own count of payload bytes
    wire_down_bytes: int  # kernel: frames broker -> device during the stage (all traffic)
    wire_up_bytes: int  # kernel: frames device -> broker
    wire_down_packets: int
    lost_down_packets: int  # the loss rule's drops (nft counters)
    lost_up_packets: int
    tcp_retrans_segs: int  # segments the device's TCP sent again (/proc/net/snmp)
    connects: int  # TCP connections the device opened to the broker (a reconnect is one more)
    link_downs: int
    time_to_ready_s: float | None  # publish -> ready on the device (None: not delivered)
    device_time_to_model_s: float | None = None  # the agent's own: first byte -> model ready
    received_s: float | None = None  # publish -> its last byte on the device (link time only)
    min_time_s: float | None  # payload + framing at the profile's configured rate (a floor)
    accuracy: float | None = None
    accuracy_note: str = ""
    scraped: dict[str, float] = {}  # figures from the device's Prometheus endpoint
    event: str = ""  # what the stage did to this device (a link drop, offline during publish)
    messages_needed: int | None = None  # task messages of the payload (manifest + chunks)
    messages_received: int | None = None  # the agent's trial log: received for this payload

    @property
    def wire_to_payload(self) -> float:
        """Downlink bytes on the wire per byte of payload plus MQTT framing."""
        return self.wire_down_bytes / max(1, self.payload_bytes + self.framing_bytes)


class StageReport(_Record):
    name: str
    kind: str  # plada | images | weights | drop | promote | abort
    description: str
    started_at: float
    seconds: float
    timeout_s: float
    rows: list[DeviceRow]
    broker_tcp_retrans_segs: int  # the broker namespace's resends to every device in the stage
    notes: list[str] = []
    rollout: RolloutRecord | None = None  # a rollout stage's record (verdicts, Home Assistant)


class TargetCheck(_Record):
    name: str
    value: float | None
    limit: float | None
    met: bool
    detail: str


class MetricsScrape(_Record):
    device: str
    at: float
    samples: list[dict[str, Any]]


class TrialReport(_Record):
    version: int = REPORT_VERSION
    trial_id: str  # its namespaces were pltr-<trial id>-...
    started_at: float
    prepare_seconds: float  # encoders, task, caches, packs (cached after the first run)
    timed_seconds: float  # links up -> every stage done -> links down
    machine: dict[str, Any]
    task: dict[str, Any]
    kit: dict[str, Any]
    devices: list[DeviceInfo]
    profiles: dict[str, dict[str, Any]]
    stages: list[StageReport]
    scrapes: list[MetricsScrape]
    targets: list[TargetCheck]
    notes: list[str] = Field(default_factory=list)

    def stage(self, kind: str) -> StageReport | None:
        return next((s for s in self.stages if s.kind == kind), None)

    @classmethod
    def load(cls, path: Path) -> TrialReport:
        try:
            return cls.model_validate_json(path.read_bytes())
        except OSError as exc:
            raise TrialRunError(f"{path}: cannot read the trial report ({exc.strerror})") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise TrialRunError(f"{path}: {where}: {first['msg']}") from exc
