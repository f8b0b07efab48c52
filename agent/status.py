"""Device status and per-task results as JSON, in a Home-Assistant-friendly shape.

The status message (retained on ``<base>/device/<id>/status``) follows zigbee2mqtt's OTA state and
Home Assistant's MQTT ``update`` entity: ``state``, ``progress`` (percent), ``installed_version``,
``latest_version``, ``in_progress``, ``update_percentage``, plus the device's current task and
version and the last error. One result message per task goes to ``.../result/<task>``.

A device holds several tasks: ``tasks`` maps each task it knows to its own state (``ready``,
``training``, ``pending``, ``error``, ``retired``), installed version, last fault and a one-line
``release_summary`` (what is installed, and a version revoked or rolled back above it); the
top-level ``task`` / ``version`` name the most recently installed head (one-task readers), and
``group`` the fleet group the device follows (a staged rollout finds its canary by it). Home
Assistant gets one ``update`` entity per task (`home_assistant_task_discovery`) whose value
template renders Home Assistant's JSON form (installed and latest version, release summary,
in progress) from that task's entry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict
from pydantic.dataclasses import dataclass as validated_dataclass

import plada
from plada.topics import TopicScheme

if TYPE_CHECKING:
    from agent.records import TaskRecord

_RECENT_FAULTS = 8


class AgentState(str, Enum):
    IDLE = "idle"
    RECEIVING = "receiving"
    TRAINING = "training"
    READY = "ready"
    ERROR = "error"


@validated_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class LastError:
    """The latest fault, as status shows it and the fleet state keeps it (validated on load)."""

    code: str  # exception class name, e.g. PayloadExpiredError, or AgentInterrupted
    message: str
    at: float
    task: str | None = None
    version: int | None = None
    payload_id: str | None = None
    fault: str | None = None  # "payload" (refused for good) or "device" (retried); agent.faults
    hint: str | None = None  # what the operator can do


@dataclass(frozen=True)
class TaskResult:
    device_id: str
    device_class: str
    task: str
    version: int
    payload_id: str
    num_indices: int
    bytes_received: int
    messages: int
    time_to_model_s: float | None  # first byte of the payload to model ready
    train_seconds: float
    train_accuracy: float | None
    probe_accuracy: float | None
    probe_size: int | None
    finished_at: float
    extra: dict[str, Any] = field(default_factory=dict)
    probe_skipped: int = 0  # probe images that could not be read (named in the device's log)

    def to_json(self) -> bytes:
        return compact_json(asdict(self))


def compact_json(value: Any) -> bytes:
    """JSON as the agent publishes it: no spaces after separators (a status is ~8 % smaller;
    every byte goes up a link that may carry 9.6 kbit/s)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _version_label(task: str | None, version: int | None) -> str | None:
    return None if task is None or version is None else f"{task}@{version}"


class StatusReporter:
    """Holds the device's status and renders it; the app publishes what it renders."""

    def __init__(
        self,
        *,
        device_id: str,
        device_class: str,
        topics: TopicScheme,
        group: str | None = None,
    ) -> None:
        self.device_id = device_id
        self.device_class = device_class
        self.group = group
        self.topics = topics
        self.state = AgentState.IDLE
        self.progress = 0.0
        self.task: str | None = None  # installed (serving) model
        self.version: int | None = None
        self.incoming_task: str | None = None  # being received or trained
        self.incoming_version: int | None = None
        self.detail = ""
        self.last_error: LastError | None = None
        self.rejected_count = 0
        self.device_fault_count = 0
        self.ready_count = 0
        self.pending: list[dict[str, Any]] = []  # accepted, not installed yet (agent.task_queue)
        self.recent_faults: list[dict[str, Any]] = []  # newest last: last_error alone hides bursts
        self.disconnects = 0
        self.last_disconnect: dict[str, Any] | None = None
        self.records: dict[str, TaskRecord] = {}  # the model store's record, per task
        self.task_errors: dict[str, LastError] = {}  # the latest fault of each task

    # -- transitions ----------------------------------------------------------------------------
    def receiving(self, progress: float) -> None:
        self.state = AgentState.RECEIVING
        self.progress = _clip(progress)
        self.detail = "receiving chunks"

    def training(self, *, task: str, version: int, progress: float, detail: str = "") -> None:
        self.state = AgentState.TRAINING
        self.incoming_task, self.incoming_version = task, version
        self.progress = _clip(progress)
        self.detail = detail

    def ready(self, *, task: str, version: int) -> None:
        self.state = AgentState.READY
        self.task, self.version = task, version
        self.incoming_task = self.incoming_version = None
        self.progress = 100.0
        self.detail = ""
        self.ready_count += 1
        self.task_errors.pop(task, None)

    def rejected(self, error: LastError) -> None:
        """A payload was refused, or a device fault deferred a task: report it; the installed
        model (if any) keeps serving."""
        self.state = AgentState.ERROR
        self.last_error = error
        brief = {k: getattr(error, k) for k in ("code", "fault", "at", "task", "version")}
        self.recent_faults = [*self.recent_faults, brief][-_RECENT_FAULTS:]
        if error.task is not None:
            self.task_errors[error.task] = error
        self.incoming_task = self.incoming_version = None
        self.progress = 0.0
        self.detail = ""
        if error.fault == "device":
            self.device_fault_count += 1
        else:
            self.rejected_count += 1

    def installed(
        self,
        *,
        task: str | None,
        version: int | None,
        records: Mapping[str, TaskRecord] | None = None,
    ) -> None:
        """What the model store's record says is serving (it may change under the daemon:
        `plada-agent rollback`): the most recent head, and every task's record."""
        self.task, self.version = task, version
        if records is not None:
            self.records = dict(records)

    def task_states(self) -> dict[str, dict[str, Any]]:
        """Task -> its own state, version and last fault (the ``tasks`` field of status)."""
        pending = {p["task"]: p for p in self.pending}
        names = set(self.records) | set(pending) | set(self.task_errors)
        if self.incoming_task is not None:
            names.add(self.incoming_task)
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(names):
            record = self.records.get(name)
            version = record.version if record else None
            error = self.task_errors.get(name)
            if self.incoming_task == name and self.state is AgentState.TRAINING:
                state, version_in = "training", self.incoming_version
            elif name in pending:
                state, version_in = "pending", pending[name]["version"]
            elif record is not None and record.installed is not None:
                state, version_in = "ready", None
            elif record is not None and record.is_retired:
                state, version_in = "retired", None
            else:
                state, version_in = ("error" if error else "idle"), None
            installed = _version_label(name, version)
            latest = _version_label(name, version_in) or installed
            out[name] = {
                "state": state,
                "version": version,
                "installed_version": installed,
                "latest_version": latest,
                "progress": round(self.progress, 1) if state == "training" else None,
                "retired_version": record.retired.version if record and record.retired else None,
                "release_summary": release_summary(state, version, version_in, record),
                "last_error": asdict(error) if error else None,
            }
        return out

    def disconnected(self, *, reason: str, at: float) -> None:
        self.disconnects += 1
        self.last_disconnect = {"reason": reason, "at": round(at, 3)}

    def restore(
        self,
        *,
        task: str | None,
        version: int | None,
        last_error: LastError | None,
        state: AgentState | None = None,
    ) -> None:
        self.task, self.version, self.last_error = task, version, last_error
        if state is not None:
            self.state = state
        elif task is not None:
            self.state = AgentState.READY
            self.progress = 100.0

    # -- rendering ------------------------------------------------------------------------------
    def to_dict(self, *, now: float | None = None) -> dict[str, Any]:
        in_progress = self.state in (AgentState.RECEIVING, AgentState.TRAINING)
        installed = _version_label(self.task, self.version)
        latest = _version_label(self.incoming_task, self.incoming_version) or installed
        return {
            "device_id": self.device_id,
            "device_class": self.device_class,
            "group": self.group,
            "state": self.state.value,
            "progress": round(self.progress, 1),
            "detail": self.detail,
            "task": self.task,
            "version": self.version,
            "incoming_task": self.incoming_task,
            "incoming_version": self.incoming_version,
            "installed_version": installed,
            "latest_version": latest,
            "in_progress": in_progress,
            "update_percentage": round(self.progress, 1) if in_progress else None,
            "last_error": asdict(self.last_error) if self.last_error else None,
            "rejected_count": self.rejected_count,
            "device_fault_count": self.device_fault_count,
            "pending": self.pending,
            "tasks": self.task_states(),
            "recent_faults": self.recent_faults,
            "link": {"disconnects": self.disconnects, "last_disconnect": self.last_disconnect},
            "agent_version": plada.__version__,
            "updated_at": round(time.time() if now is None else now, 3),
        }

    def to_json(self) -> bytes:
        return compact_json(self.to_dict())

    def home_assistant_discovery(self, *, prefix: str) -> tuple[str, bytes]:
        """Topic and config of a Home Assistant MQTT ``update`` entity for this device."""
        object_id = f"plada_{self.device_id}"  # matches the ACL's plada_%u
        config = {
            "name": "PLADA task",
            "unique_id": object_id,
            "object_id": object_id,
            "state_topic": self.topics.status(self.device_id),
            "value_template": "{{ value_json.installed_version or 'none' }}",
            "latest_version_topic": self.topics.status(self.device_id),
            "latest_version_template": "{{ value_json.latest_version or 'none' }}",
            "json_attributes_topic": self.topics.status(self.device_id),
            "availability_topic": self.topics.availability(self.device_id),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {
                "identifiers": [object_id],
                "name": f"PLADA {self.device_id}",
                "model": self.device_class,
                "sw_version": plada.__version__,
            },
        }
        topic = f"{prefix}/update/{object_id}/config"
        return topic, compact_json(config)

    def home_assistant_task_discovery(self, task: str, *, prefix: str) -> tuple[str, bytes]:
        """Topic and config of one task's Home Assistant ``update`` entity (its installed and
        incoming version, from the ``tasks`` field of status). Publishing an empty retained
        config to the topic removes the entity (a retired task)."""
        node_id = f"plada_{self.device_id}"  # the ACL allows homeassistant/update/plada_%u/+/config
        object_id = f"{node_id}_{task}"
        status = self.topics.status(self.device_id)
        field = f"value_json.tasks['{task}']"

        def expr(key: str, default: str) -> str:  # Jinja: the task's field, or the default
            return f"({field}.{key} if {field} is defined and {field}.{key} else {default})"

        def pick(key: str) -> str:
            return "{{ " + expr(key, "'none'") + " }}"

        # A value template that renders a JSON object is read field by field by Home
        # Assistant's MQTT update entity (installed_version, latest_version, release_summary,
        # in_progress): one template gives the versions and the release summary together.
        value = (
            "{{ {'installed_version': "
            + expr("installed_version", "'none'")
            + ", 'latest_version': "
            + expr("latest_version", "'none'")
            + ", 'release_summary': "
            + expr("release_summary", "''")
            + ", 'in_progress': "
            + f"({field} is defined and {field}.state == 'training')"
            + "} | tojson }}"
        )
        config = {
            "name": f"PLADA task {task}",
            "unique_id": object_id,
            "object_id": object_id,
            "state_topic": status,
            "value_template": value,
            "latest_version_topic": status,
            "latest_version_template": pick("latest_version"),
            "json_attributes_topic": status,
            "json_attributes_template": "{{ (" + field + " if " + field + " is defined "
            "else {}) | tojson }}",
            "availability_topic": self.topics.availability(self.device_id),
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {"identifiers": [node_id]},
        }
        topic = f"{prefix}/update/{node_id}/{task}/config"
        return topic, compact_json(config)


def release_summary(
    state: str, version: int | None, incoming: int | None, record: TaskRecord | None
) -> str:
    """One line for Home Assistant's release summary: what serves, what is arriving, and a
    version undone above what serves (revoked by a staged rollout, or an operator's rollback)."""
    if state == "retired" and record is not None and record.retired is not None:
        return f"retired (versions up to v{record.retired.version})"
    parts = [f"v{version} installed" if version is not None else "no version installed"]
    if incoming is not None and state in ("training", "pending"):
        parts.append(f"v{incoming} {state}")
    undone = [m for m in (record.rolled_back if record else ()) if m.version > (version or 0)]
    if undone:
        mark = undone[-1]
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mark.at))
        who = "revoked by the builder" if mark.revocation_digest else "rolled back by an operator"
        parts.append(f"v{mark.version} {who} at {when}")
    return "; ".join(parts)


def _clip(progress: float) -> float:
    return max(0.0, min(100.0, float(progress)))
