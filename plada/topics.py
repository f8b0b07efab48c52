"""The MQTT topic scheme, shared by the builder (publish, fleet) and the agent.

Everything lives under a configurable base (default ``plada``); segments are lower_snake ids
``[a-z0-9_-]``, no leading slash, nothing broker-specific (works on MQTT 5 and 3.1.1).

==============================================  ========  ====  =================================
topic                                           retained  QoS   payload
==============================================  ========  ====  =================================
``<base>/group/<group>/tasks/<task>``           yes       1     signed task payload (whole)
``<base>/group/<group>/tasks/<task>/manifest``  yes       1     chunk manifest (chunked payload)
``<base>/group/<group>/tasks/<task>/chunk/<i>`` yes       1     chunk ``i`` (chunked payload)
``<base>/group/<group>/tasks/<task>/retired``   yes       1     signed retirement (plada.tombstone)
``<base>/group/<group>/tasks/<task>/revoked``   yes       1     signed revocation of one version
                                                                (plada.revocation)
``<base>/group/<group>/task``                   yes       1     one-task scheme (before several
``<base>/group/<group>/task/manifest``                          tasks per device): still read,
``<base>/group/<group>/task/chunk/<i>``                         no longer published
``<base>/device/<id>/status``                   yes       1     status JSON (state, tasks...)
``<base>/device/<id>/availability``             yes       1     ``online`` / ``offline`` (will)
``<base>/device/<id>/result/<task>``            yes       1     result JSON for one task
==============================================  ========  ====  =================================

Every task of a group has its own retained topics, so a device that comes online receives every
current task of its group, and publishing (or retiring) one task never touches another's. A
device subscribes to each task's payload, manifest and retirement (``<base>/group/<group>/tasks/+``,
``.../tasks/+/manifest``, ``.../tasks/+/retired``) and, for fleets migrating from the one-task
scheme, ``.../task`` and ``.../task/manifest``; chunk topics only one by one, those it is still
missing (`TopicScheme.device_filters`); it writes only under
``<base>/device/<its id>/``: that is what the example broker ACL enforces. A zero-length retained
message clears a topic; receivers ignore empty messages. `ParsedTopic.task` names the task of a
per-task topic and is None on the one-task topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_BASE",
    "TASK_QOS",
    "BrokerUrl",
    "ParsedTopic",
    "TopicKind",
    "TopicScheme",
    "parse_broker_url",
    "validate_segment",
]

DEFAULT_BASE = "plada"
TASK_QOS = 1
_SEGMENT = re.compile(r"^[a-z0-9_-]{1,64}$")
_BASE = re.compile(r"^[a-z0-9_-]{1,64}(/[a-z0-9_-]{1,64}){0,3}$")
_MAX_CHUNKS = 100_000


def validate_segment(value: str, *, what: str) -> str:
    """Return ``value`` if it is a valid topic segment, else raise ValueError naming ``what``."""
    if not _SEGMENT.match(value):
        raise ValueError(
            f"{what} {value!r} is not a valid topic segment: use [a-z0-9_-], 1-64 chars"
        )
    return value


class TopicKind(Enum):
    TASK = "task"
    MANIFEST = "manifest"
    CHUNK = "chunk"
    STATUS = "status"
    AVAILABILITY = "availability"
    RESULT = "result"
    RETIRED = "retired"
    REVOKED = "revoked"


@dataclass(frozen=True)
class ParsedTopic:
    kind: TopicKind
    group: str | None = None
    device_id: str | None = None
    chunk_index: int | None = None
    task: str | None = None


@dataclass(frozen=True)
class TopicScheme:
    """Builds and parses every topic under one base."""

    base: str = DEFAULT_BASE

    def __post_init__(self) -> None:
        if not _BASE.match(self.base):
            raise ValueError(
                f"base topic {self.base!r} is invalid: up to 4 segments of [a-z0-9_-], "
                "no leading or trailing slash"
            )

    # -- group (task) topics -------------------------------------------------------------------
    # With `name`, a task's own topics (what publish uses); without, the one-task scheme's.
    def task(self, group: str, name: str | None = None) -> str:
        group = validate_segment(group, what="group")
        if name is None:
            return f"{self.base}/group/{group}/task"
        return f"{self.base}/group/{group}/tasks/{validate_segment(name, what='task')}"

    def task_manifest(self, group: str, name: str | None = None) -> str:
        return f"{self.task(group, name)}/manifest"

    def task_chunk(self, group: str, index: int, name: str | None = None) -> str:
        if not 0 <= index < _MAX_CHUNKS:
            raise ValueError(f"chunk index {index} out of range 0..{_MAX_CHUNKS - 1}")
        return f"{self.task(group, name)}/chunk/{index}"

    def task_retired(self, group: str, name: str) -> str:
        """Where a task's signed retirement is retained."""
        return f"{self.task(group, name)}/retired"

    def task_revoked(self, group: str, name: str) -> str:
        """Where a signed revocation of one of the task's versions is retained (a staged
        rollout's abort). Under the task's topics, so the device's ``tasks/#`` subscription
        already carries it: no new subscription."""
        return f"{self.task(group, name)}/revoked"

    def task_filter(self, group: str, name: str | None = None) -> str:
        """Filter for the one-task scheme's task, manifest and chunks, or (with `name`) one
        task's payload, manifest, chunks, retirement and revocation (``#`` also matches the
        parent)."""
        return f"{self.task(group, name)}/#"

    def tasks_filter(self, group: str) -> str:
        """Filter for every task's topics of a group."""
        return f"{self.base}/group/{validate_segment(group, what='group')}/tasks/#"

    def group_filters(self, group: str) -> tuple[str, str]:
        """Every task's topics and the one-task scheme's, chunks included (what a watcher such as
        the builder reads; what devices before resumable delivery subscribed to)."""
        return (self.tasks_filter(group), self.task_filter(group))

    def device_filters(self, group: str) -> tuple[str, ...]:
        """What a device keeps subscribed: every task's payload, manifest, retirement and
        revocation, and the one-task scheme's payload and manifest; never a chunk (``+`` matches
        one level, so ``tasks/+`` does not match ``tasks/<task>/chunk/<i>``). A device subscribes
        to exactly the chunk topics it is missing, one by one (agent.subscriptions)."""
        tasks = f"{self.base}/group/{validate_segment(group, what='group')}/tasks/+"
        return (
            tasks,
            f"{tasks}/manifest",
            f"{tasks}/retired",
            f"{tasks}/revoked",  # a staged rollout's abort (plada.revocation)
            self.task(group),
            self.task_manifest(group),
        )

    # -- device topics --------------------------------------------------------------------------
    def device_prefix(self, device_id: str) -> str:
        return f"{self.base}/device/{validate_segment(device_id, what='device id')}"

    def status(self, device_id: str) -> str:
        return f"{self.device_prefix(device_id)}/status"

    def availability(self, device_id: str) -> str:
        return f"{self.device_prefix(device_id)}/availability"

    def result(self, device_id: str, task: str) -> str:
        return f"{self.device_prefix(device_id)}/result/{validate_segment(task, what='task')}"

    def all_status_filter(self) -> str:
        return f"{self.base}/device/+/status"

    def all_availability_filter(self) -> str:
        return f"{self.base}/device/+/availability"

    def all_results_filter(self, task: str) -> str:
        return f"{self.base}/device/+/result/{validate_segment(task, what='task')}"

    # -- parsing --------------------------------------------------------------------------------
    def parse(self, topic: str) -> ParsedTopic | None:
        """Classify a topic of this scheme; None for anything else (never raises)."""
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return None
        parts = topic[len(prefix) :].split("/")
        if any(not _SEGMENT.match(p) for p in parts):
            return None
        if parts[0] == "group" and len(parts) >= 3 and parts[2] == "task":
            return _parse_group(parts)
        if parts[0] == "group" and len(parts) >= 4 and parts[2] == "tasks":
            return _parse_task(parts)
        if parts[0] == "device" and len(parts) >= 3:
            return _parse_device(parts)
        return None


def _parse_group(parts: list[str]) -> ParsedTopic | None:
    group = parts[1]
    rest = parts[3:]
    if not rest:
        return ParsedTopic(TopicKind.TASK, group=group)
    if rest == ["manifest"]:
        return ParsedTopic(TopicKind.MANIFEST, group=group)
    if len(rest) == 2 and rest[0] == "chunk" and rest[1].isdigit():
        index = int(rest[1])
        if index < _MAX_CHUNKS and str(index) == rest[1]:
            return ParsedTopic(TopicKind.CHUNK, group=group, chunk_index=index)
    return None


def _parse_task(parts: list[str]) -> ParsedTopic | None:
    group, task = parts[1], parts[3]
    rest = parts[4:]
    if not rest:
        return ParsedTopic(TopicKind.TASK, group=group, task=task)
    if rest == ["manifest"]:
        return ParsedTopic(TopicKind.MANIFEST, group=group, task=task)
    if rest == ["retired"]:
        return ParsedTopic(TopicKind.RETIRED, group=group, task=task)
    if rest == ["revoked"]:
        return ParsedTopic(TopicKind.REVOKED, group=group, task=task)
    if len(rest) == 2 and rest[0] == "chunk" and rest[1].isdigit():
        index = int(rest[1])
        if index < _MAX_CHUNKS and str(index) == rest[1]:
            return ParsedTopic(TopicKind.CHUNK, group=group, chunk_index=index, task=task)
    return None


def _parse_device(parts: list[str]) -> ParsedTopic | None:
    device_id = parts[1]
    rest = parts[2:]
    if rest == ["status"]:
        return ParsedTopic(TopicKind.STATUS, device_id=device_id)
    if rest == ["availability"]:
        return ParsedTopic(TopicKind.AVAILABILITY, device_id=device_id)
    if len(rest) == 2 and rest[0] == "result":
        return ParsedTopic(TopicKind.RESULT, device_id=device_id, task=rest[1])
    return None


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerUrl:
    """Parse ``mqtt://host[:port]`` (default 1883) or ``mqtts://host[:port]`` (default 8883).

    Credentials in the URL are refused: they would end up in logs and process listings.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if parts.username or parts.password:
        raise ValueError("broker URL must not carry credentials; use a password file or env")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"broker URL {url!r}: unexpected path, query or fragment")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r}: missing host")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: bad port") from exc
    return BrokerUrl(host=parts.hostname, port=port or (8883 if tls else 1883), tls=tls)
