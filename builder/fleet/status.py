"""Read the fleet's retained status, availability and per-task results back from the broker.

Devices' messages are typed where the builder reads them (pydantic): the fields it shows are
checked, fields a newer agent adds are kept, and a message that is not a JSON object of the
expected shape is skipped with a warning naming its topic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from builder.fleet.session import BrokerOptions, BrokerSession
from plada.topics import TopicKind, TopicScheme

logger = logging.getLogger(__name__)


class DeviceMessage(BaseModel):
    """A device's JSON message as read back; reads like the JSON it came as (`msg["task"]`)."""

    model_config = ConfigDict(extra="allow")

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def to_json(self) -> dict[str, Any]:
        """The message as it was received."""
        data: dict[str, Any] = self.model_dump(mode="json", exclude_unset=True)
        return data


class ErrorInfo(DeviceMessage):
    code: str
    message: str
    fault: str | None = None  # "payload" or "device" (agent/faults.py)
    version: int | None = None  # the task version it concerns, if any
    payload_id: str | None = None  # the payload it concerns, if any


class TaskState(DeviceMessage):
    """One task's entry in a device's status (`tasks` field)."""

    state: str | None = None  # ready, training, pending, error, retired, idle
    version: int | None = None
    latest_version: str | None = None
    progress: float | None = None
    retired_version: int | None = None
    release_summary: str | None = None
    last_error: ErrorInfo | None = None


class DeviceStatus(DeviceMessage):
    """`<base>/device/<id>/status` (agent/status.py writes it)."""

    device_class: str | None = None
    group: str | None = None  # the fleet group it follows (agents since staged rollouts)
    state: str | None = None
    progress: float | None = None
    task: str | None = None
    version: int | None = None
    latest_version: str | None = None
    last_error: ErrorInfo | None = None
    pending: list[Any] = []  # tasks queued for a retry after a device fault
    tasks: dict[str, TaskState] = {}  # per task (agents holding several tasks; older: none)
    updated_at: float | None = None


class TaskResultMessage(DeviceMessage):
    """`<base>/device/<id>/result/<task>`: one device's outcome for one task."""

    device_id: str
    device_class: str | None = None
    task: str
    version: int
    payload_id: str | None = None
    probe_accuracy: float | None = None
    probe_size: int | None = None
    time_to_model_s: float | None = None
    bytes_received: int | None = None
    messages: int | None = None
    finished_at: float | None = None


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    availability: str | None  # online / offline / None (never seen)
    status: DeviceStatus | None

    def to_dict(self) -> dict[str, Any]:
        s = self.status or DeviceStatus()
        return {
            "device_id": self.device_id,
            "availability": self.availability,
            "device_class": s.device_class,
            "state": s.state,
            "progress": s.progress,
            "task": s.task,
            "version": s.version,
            "latest_version": s.latest_version,
            "last_error": s.last_error.to_json() if s.last_error else None,
            "pending": s.pending,
            "tasks": {name: t.to_json() for name, t in s.tasks.items()},
            "updated_at": s.updated_at,
        }

    def task_rows(self) -> list[dict[str, Any]]:
        """One row per task the device reports (one row without a task if it reports none; an
        agent from before several tasks reports its one task at the top level)."""
        device = self.to_dict()
        s = self.status or DeviceStatus()
        base = {k: device[k] for k in ("device_id", "availability", "device_class")}
        if not s.tasks:
            return [
                base
                | {
                    "task": s.task,
                    "state": s.state,
                    "version": s.version,
                    "progress": s.progress,
                    "last_error": device["last_error"],
                }
            ]
        return [
            base
            | {
                "task": name,
                "state": t.state,
                "version": t.version if t.state != "retired" else t.retired_version,
                "progress": t.progress,
                "last_error": t.last_error.to_json() if t.last_error else None,
            }
            for name, t in sorted(s.tasks.items())
        ]


Message = TypeVar("Message", bound=DeviceMessage)


def parse_message(kind: type[Message], body: bytes, topic: str) -> Message | None:
    """The message on `topic`, or None (logged) when it is empty or not of that shape."""
    if not body:
        return None
    try:
        return kind.model_validate_json(body)
    except ValidationError as exc:
        logger.warning("ignoring a malformed message on %s: %s", topic, exc.errors()[0]["msg"])
        return None


def fleet_status(options: BrokerOptions, *, base_topic: str = "plada") -> list[DeviceView]:
    """Every device that has a retained status or availability message, sorted by id."""
    topics = TopicScheme(base_topic)
    with BrokerSession(options) as session:
        session.collect_retained(topics.all_availability_filter(), quiet_s=0.2)
        retained = session.collect_retained(topics.all_status_filter())
    status: dict[str, DeviceStatus | None] = {}
    availability: dict[str, str] = {}
    for topic, body in retained.items():
        parsed = topics.parse(topic)
        if parsed is None or parsed.device_id is None or not body:
            continue
        if parsed.kind is TopicKind.STATUS:
            status[parsed.device_id] = parse_message(DeviceStatus, body, topic)
        elif parsed.kind is TopicKind.AVAILABILITY:
            availability[parsed.device_id] = body.decode("utf-8", errors="replace")
    ids = sorted(set(status) | set(availability))
    return [DeviceView(d, availability.get(d), status.get(d)) for d in ids]


def fleet_results(
    options: BrokerOptions, task: str, *, base_topic: str = "plada"
) -> list[TaskResultMessage]:
    """Each device's retained result message for ``task``, sorted by topic (device id)."""
    topics = TopicScheme(base_topic)
    with BrokerSession(options) as session:
        retained = session.collect_retained(topics.all_results_filter(task))
    return results_in(retained, topics, task=task)


def results_in(
    retained: dict[str, bytes], topics: TopicScheme, *, task: str | None = None
) -> list[TaskResultMessage]:
    """The result messages among retained messages (of one task, if given), by topic."""
    rows = []
    for topic, body in sorted(retained.items()):
        parsed = topics.parse(topic)
        if parsed is None or parsed.kind is not TopicKind.RESULT:
            continue
        if task is not None and parsed.task != task:
            continue
        result = parse_message(TaskResultMessage, body, topic)
        if result is not None:
            rows.append(result)
    return rows
