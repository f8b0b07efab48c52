"""A staged rollout's record (JSON): what was decided, and per device what it reported and shows.

Written by builder.fleet.rollout, read back by the trial report and `plada-build rollout --show`;
every read validates (pydantic, unknown keys refused) and a bad record raises RolloutRecordError
naming the field. Times are unix seconds (floats); accuracies 0..1.

    {"format": 1, "task", "version", "payload_id", "canary_groups", "rest_groups",
     "threshold": {"min_accuracy", "min_fraction"}, "timeout_s", "on_timeout",
     "outcome": "promoted" | "aborted", "reason", "started_at", "decided_at", "finished_at",
     "revocation_id", "revoked": [{"group", "topic", "cleared", "restored"}],
     "devices": [{"device_id", "group", "role", "device_class", "verdict", "reported_accuracy",
                  "simulated_accuracy", "required_accuracy", "probe_size", "installed_version",
                  "published_at", "answered_at", "device_finished_at", "time_to_model_s",
                  "rolled_back_at", "home_assistant": {...}}]}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from builder.errors import RolloutRecordError
from builder.fleet.rollout_policy import OnTimeout, Outcome, Verdict
from plada.atomic import write_bytes_atomic

RECORD_FORMAT: Literal[1] = 1


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HomeAssistantView(_Record):
    """What Home Assistant shows for the device's entity of the task: its discovery config and
    the state topics it names, as retained on the broker, rendered with the config's own
    templates (builder.fleet.home_assistant)."""

    entity_topic: str = Field(description="the retained discovery config it was derived from")
    present: bool = Field(description="a discovery config is retained (else HA shows no entity)")
    available: bool | None = Field(default=None, description="availability topic says online")
    installed_version: str | None = None
    latest_version: str | None = None
    release_summary: str | None = None
    in_progress: bool | None = None
    state: Literal["on", "off"] | None = Field(
        default=None,
        description="on: an update is offered (latest differs from installed); off: up to date; "
        "None: HA shows unknown",
    )


class ThresholdRecord(_Record):
    min_accuracy: float | None = Field(default=None, ge=0, le=1)
    min_fraction: float | None = Field(default=None, ge=0, le=1)


class DeviceOutcome(_Record):
    device_id: str
    group: str
    role: Literal["canary", "rest"]
    device_class: str | None = None
    verdict: Verdict | None = Field(
        description="rollout_policy's verdict; None: a rest device of an aborted rollout (never "
        "sent the task)"
    )
    reported_accuracy: float | None = Field(default=None, description="its probe_accuracy")
    simulated_accuracy: float | None = Field(default=None, description="report.json, its class")
    required_accuracy: float | None = None
    probe_size: int | None = None
    reported_version: int | None = Field(default=None, description="version its result names")
    installed_version: int | None = Field(
        default=None, description="the task's version serving at the end (status)"
    )
    published_at: float | None = Field(default=None, description="task published to its group")
    answered_at: float | None = Field(default=None, description="its result reached the builder")
    device_finished_at: float | None = Field(default=None, description="model ready, its clock")
    time_to_model_s: float | None = None
    rolled_back_at: float | None = Field(
        default=None, description="its status stopped serving the revoked version (aborts)"
    )
    home_assistant: HomeAssistantView | None = None


class RevokedGroup(_Record):
    group: str
    topic: str
    cleared: list[str]
    restored: list[str]


class RolloutRecord(_Record):
    format: Literal[1] = RECORD_FORMAT
    task: str
    version: int = Field(ge=1)
    payload_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    canary_groups: list[str] = Field(min_length=1)
    rest_groups: list[str]
    threshold: ThresholdRecord
    timeout_s: float = Field(gt=0)
    on_timeout: OnTimeout
    outcome: Outcome
    reason: str
    started_at: float
    decided_at: float
    finished_at: float
    revocation_id: str | None = Field(default=None, description="sha256 of the revocation sent")
    revoked: list[RevokedGroup] = []
    devices: list[DeviceOutcome]

    def device(self, device_id: str) -> DeviceOutcome:
        return next(d for d in self.devices if d.device_id == device_id)

    def save(self, path: Path) -> None:
        write_bytes_atomic(path, self.model_dump_json(indent=2).encode("utf-8"))

    @classmethod
    def parse(cls, data: object, *, where: str = "rollout record") -> RolloutRecord:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
            why = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            raise RolloutRecordError(f"{where}: {loc}: {why}") from exc

    @classmethod
    def load(cls, path: Path) -> RolloutRecord:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RolloutRecordError(f"{path}: unreadable rollout record ({exc})") from exc
        return cls.parse(data, where=str(path))
