"""Read the fleet's retained status, availability and per-task results back from the broker."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from builder.publish import BrokerOptions, BrokerSession
from plada.topics import TopicKind, TopicScheme

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    availability: str | None  # online / offline / None (never seen)
    status: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        s = self.status or {}
        error = s.get("last_error") or None
        return {
            "device_id": self.device_id,
            "availability": self.availability,
            "device_class": s.get("device_class"),
            "state": s.get("state"),
            "progress": s.get("progress"),
            "task": s.get("task"),
            "version": s.get("version"),
            "latest_version": s.get("latest_version"),
            "last_error": error,
            "pending": s.get("pending") or [],
            "updated_at": s.get("updated_at"),
        }


def _json(body: bytes, topic: str) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = json.loads(body)
    except ValueError:
        logger.warning("ignoring non-JSON message on %s", topic)
        return None
    return value if isinstance(value, dict) else None


def fleet_status(options: BrokerOptions, *, base_topic: str = "plada") -> list[DeviceView]:
    """Every device that has a retained status or availability message, sorted by id."""
    topics = TopicScheme(base_topic)
    with BrokerSession(options) as session:
        session.collect_retained(topics.all_availability_filter(), quiet_s=0.2)
        retained = session.collect_retained(topics.all_status_filter())
    status: dict[str, dict[str, Any] | None] = {}
    availability: dict[str, str] = {}
    for topic, body in retained.items():
        parsed = topics.parse(topic)
        if parsed is None or parsed.device_id is None or not body:
            continue
        if parsed.kind is TopicKind.STATUS:
            status[parsed.device_id] = _json(body, topic)
        elif parsed.kind is TopicKind.AVAILABILITY:
            availability[parsed.device_id] = body.decode("utf-8", errors="replace")
    ids = sorted(set(status) | set(availability))
    return [DeviceView(d, availability.get(d), status.get(d)) for d in ids]


def fleet_results(
    options: BrokerOptions, task: str, *, base_topic: str = "plada"
) -> list[dict[str, Any]]:
    """Each device's retained result message for ``task``, sorted by device id."""
    topics = TopicScheme(base_topic)
    with BrokerSession(options) as session:
        retained = session.collect_retained(topics.all_results_filter(task))
    rows = []
    for topic, body in sorted(retained.items()):
        parsed = topics.parse(topic)
        if parsed is None or parsed.kind is not TopicKind.RESULT or parsed.task != task:
            continue
        result = _json(body, topic)
        if result is not None:
            rows.append(result)
    return rows


def format_status_table(devices: list[DeviceView]) -> str:
    header = ("device", "class", "avail", "state", "task@version", "progress", "last error")
    lines: list[tuple[str, ...]] = [header]
    for d in devices:
        row = d.to_dict()
        err = row["last_error"]
        task = f"{row['task']}@{row['version']}" if row["task"] else "-"
        progress = "" if row["progress"] is None else f"{row['progress']:.0f}%"
        state = str(row["state"] or "?")
        if row["pending"]:
            state += f" ({len(row['pending'])} waiting)"
        fault = f"{err['fault']} fault " if err and err.get("fault") else ""
        lines.append(
            (
                d.device_id,
                str(row["device_class"] or "?"),
                str(row["availability"] or "?"),
                state,
                task,
                progress,
                f"{fault}{err['code']}: {err['message'][:60]}" if err else "",
            )
        )
    return _table(lines)


def format_results_table(rows: list[dict[str, Any]]) -> str:
    header = ("device", "class", "version", "probe acc", "time to model", "bytes rx", "msgs")
    lines: list[tuple[str, ...]] = [header]
    for r in rows:
        acc = r.get("probe_accuracy")
        ttm = r.get("time_to_model_s")
        lines.append(
            (
                str(r.get("device_id")),
                str(r.get("device_class")),
                str(r.get("version")),
                "-" if acc is None else f"{100 * acc:.1f}% (n={r.get('probe_size')})",
                "-" if ttm is None else f"{ttm:.2f} s",
                str(r.get("bytes_received")),
                str(r.get("messages")),
            )
        )
    return _table(lines)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
