"""Field-trial log: every received MQTT message and task outcome, in SQLite under the state dir.

What the product claims (accuracy per transmitted byte, time to model) is measured on the device:
each message's topic, payload bytes and an estimate of the MQTT framing around it; per payload the
time from its first byte to the model being ready. Every fault and every install is an event
(kind ``fault``, ``installed``, ``superseded``, ``retired``, ``revoked``, ``resumed``, ``link``,
``state``) with its cause and, where there is one, its task and version, so a device's history
survives the status message that only shows the latest. With several tasks per device a message's
topic names its task too (``<base>/group/<group>/tasks/<task>/...``).
"""

from __future__ import annotations

import csv
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plada.atomic import atomic_path

DB_NAME = "triallog.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    topic TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload_bytes INTEGER NOT NULL,
    overhead_bytes INTEGER NOT NULL,
    payload_id TEXT
);
CREATE INDEX IF NOT EXISTS messages_payload ON messages(payload_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    payload_id TEXT,
    task TEXT,
    version INTEGER,
    fault TEXT,
    code TEXT,
    message TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    payload_id TEXT PRIMARY KEY,
    task TEXT,
    version INTEGER,
    outcome TEXT NOT NULL,
    first_byte_at REAL,
    ready_at REAL,
    train_seconds REAL,
    error TEXT,
    updated_at REAL NOT NULL
);
"""


def _varint_len(value: int) -> int:
    """Bytes of an MQTT variable byte integer."""
    n = 1
    while value >= 128:
        value //= 128
        n += 1
    return n


def mqtt_overhead_bytes(topic: str, payload_bytes: int, *, qos: int, mqtt5: bool) -> int:
    """Estimate of the bytes MQTT adds around one PUBLISH to this client, plus its acknowledgement.

    PUBLISH: fixed header (1 + remaining-length varint), topic (2 + UTF-8), packet id (QoS > 0),
    properties length (MQTT 5, assumed empty). PUBACK: 4 bytes (QoS 1). TCP/IP and TLS framing
    are not counted.
    """
    variable = 2 + len(topic.encode("utf-8")) + (2 if qos > 0 else 0) + (1 if mqtt5 else 0)
    remaining = variable + payload_bytes
    publish = 1 + _varint_len(remaining) + variable
    puback = 4 if qos == 1 else (4 * 3 if qos == 2 else 0)
    return publish + puback


@dataclass(frozen=True)
class TaskSummary:
    payload_id: str
    task: str | None
    version: int | None
    outcome: str
    messages: int
    payload_bytes: int
    overhead_bytes: int
    first_byte_at: float | None
    ready_at: float | None
    time_to_ready_s: float | None
    train_seconds: float | None
    error: str | None


@dataclass(frozen=True)
class Event:
    at: float
    kind: str  # fault | installed | superseded | retired | resumed | link | state
    payload_id: str | None
    task: str | None
    version: int | None
    fault: str | None  # payload | device (kind fault)
    code: str | None  # exception class name, AgentInterrupted, disconnected ...
    message: str | None


@dataclass(frozen=True)
class MessageTotal:
    """Messages on one topic of one kind, for one payload's task (None when not known)."""

    topic: str
    kind: str
    task: str | None
    messages: int
    payload_bytes: int
    overhead_bytes: int


@dataclass(frozen=True)
class LinkSummary:
    """The link's latest event (``connected`` / ``disconnected``) and every disconnect so far."""

    last_code: str | None
    last_at: float | None
    disconnects: int


class TrialLog:
    """One SQLite file; safe to read (trial-report) while the daemon writes (WAL)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / DB_NAME
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=10)) as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with db:  # commit or roll back
                yield db

    def record_message(
        self,
        *,
        topic: str,
        kind: str,
        payload_bytes: int,
        overhead_bytes: int,
        received_at: float | None = None,
        payload_id: str | None = None,
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO messages (received_at, topic, kind, payload_bytes, overhead_bytes,"
                " payload_id) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    time.time() if received_at is None else received_at,
                    topic,
                    kind,
                    payload_bytes,
                    overhead_bytes,
                    payload_id,
                ),
            )

    def assign_payload(self, *, topics_since: float, topics: list[str], payload_id: str) -> None:
        """Attribute earlier unassigned messages (chunks seen before the payload was known)."""
        if not topics:
            return
        marks = ",".join("?" * len(topics))
        with self._connect() as db:
            db.execute(
                f"UPDATE messages SET payload_id = ? WHERE payload_id IS NULL"  # noqa: S608
                f" AND received_at >= ? AND topic IN ({marks})",
                (payload_id, topics_since, *topics),
            )

    def record_task(
        self,
        *,
        payload_id: str,
        outcome: str,
        task: str | None = None,
        version: int | None = None,
        first_byte_at: float | None = None,
        ready_at: float | None = None,
        train_seconds: float | None = None,
        error: str | None = None,
    ) -> None:
        """Insert or update the outcome (received, ready, rejected, failed) of one payload."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO tasks (payload_id, task, version, outcome, first_byte_at, ready_at,"
                " train_seconds, error, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(payload_id) DO UPDATE SET"
                " task = COALESCE(excluded.task, task),"
                " version = COALESCE(excluded.version, version),"
                " outcome = excluded.outcome,"
                " first_byte_at = COALESCE(first_byte_at, excluded.first_byte_at),"
                " ready_at = COALESCE(excluded.ready_at, ready_at),"
                " train_seconds = COALESCE(excluded.train_seconds, train_seconds),"
                " error = excluded.error,"
                " updated_at = excluded.updated_at",
                (
                    payload_id,
                    task,
                    version,
                    outcome,
                    first_byte_at,
                    ready_at,
                    train_seconds,
                    error,
                    time.time(),
                ),
            )

    def record_event(
        self,
        *,
        kind: str,
        payload_id: str | None = None,
        task: str | None = None,
        version: int | None = None,
        fault: str | None = None,
        code: str | None = None,
        message: str | None = None,
        at: float | None = None,
    ) -> None:
        """One fault, install or other event (see the module docstring for the kinds)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (at, kind, payload_id, task, version, fault, code, message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time() if at is None else at,
                    kind,
                    payload_id,
                    task,
                    version,
                    fault,
                    code,
                    message,
                ),
            )

    def events(self, kind: str | None = None) -> list[Event]:
        """Events, oldest first (all kinds, or one)."""
        query = "SELECT at, kind, payload_id, task, version, fault, code, message FROM events"
        params: tuple[str, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            params = (kind,)
        with self._connect() as db:
            rows = db.execute(query + " ORDER BY id", params).fetchall()
        return [Event(*row) for row in rows]

    def task_summaries(self) -> list[TaskSummary]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT t.payload_id, t.task, t.version, t.outcome,"
                " COUNT(m.id), COALESCE(SUM(m.payload_bytes), 0),"
                " COALESCE(SUM(m.overhead_bytes), 0),"
                " COALESCE(t.first_byte_at, MIN(m.received_at)),"
                " t.ready_at, t.train_seconds, t.error"
                " FROM tasks t LEFT JOIN messages m ON m.payload_id = t.payload_id"
                " GROUP BY t.payload_id ORDER BY t.updated_at"
            ).fetchall()
        out = []
        for pid, task, version, outcome, n, pbytes, obytes, first, ready, train_s, error in rows:
            ttr = ready - first if ready is not None and first is not None else None
            out.append(
                TaskSummary(
                    payload_id=pid,
                    task=task,
                    version=version,
                    outcome=outcome,
                    messages=int(n),
                    payload_bytes=int(pbytes),
                    overhead_bytes=int(obytes),
                    first_byte_at=first,
                    ready_at=ready,
                    time_to_ready_s=ttr,
                    train_seconds=train_s,
                    error=error,
                )
            )
        return out

    def task_summary(self, payload_id: str) -> TaskSummary | None:
        return next((s for s in self.task_summaries() if s.payload_id == payload_id), None)

    def totals(self) -> dict[str, int]:
        with self._connect() as db:
            n, pbytes, obytes = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(payload_bytes), 0), COALESCE(SUM(overhead_bytes), 0)"
                " FROM messages"
            ).fetchone()
        return {"messages": int(n), "payload_bytes": int(pbytes), "overhead_bytes": int(obytes)}

    # -- aggregates the metrics endpoint reads at scrape time (agent.metrics) -------------------
    def message_totals(self) -> list[MessageTotal]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT m.topic, m.kind, t.task, COUNT(*), SUM(m.payload_bytes),"
                " SUM(m.overhead_bytes)"
                " FROM messages m LEFT JOIN tasks t ON t.payload_id = m.payload_id"
                " GROUP BY m.topic, m.kind, t.task ORDER BY m.topic, m.kind"
            ).fetchall()
        return [
            MessageTotal(topic, kind, task, int(n), int(pbytes), int(obytes))
            for topic, kind, task, n, pbytes, obytes in rows
        ]

    def fault_counts(self) -> dict[tuple[str, str], int]:
        """(fault class, code) -> how many fault events."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT COALESCE(fault, ''), COALESCE(code, ''), COUNT(*) FROM events"
                " WHERE kind = 'fault' GROUP BY fault, code"
            ).fetchall()
        return {(fault, code): int(n) for fault, code, n in rows}

    def link_summary(self) -> LinkSummary:
        with self._connect() as db:
            last = db.execute(
                "SELECT code, at FROM events WHERE kind = 'link' ORDER BY id DESC LIMIT 1"
            ).fetchone()
            (disconnects,) = db.execute(
                "SELECT COUNT(*) FROM events WHERE kind = 'link' AND code = 'disconnected'"
            ).fetchone()
        code, at = last if last is not None else (None, None)
        return LinkSummary(last_code=code, last_at=at, disconnects=int(disconnects))

    def last_train_seconds(self) -> dict[str, float]:
        """task -> training seconds of its most recent install (outcome ``ready``)."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT task, train_seconds FROM tasks WHERE outcome = 'ready'"
                " AND task IS NOT NULL AND train_seconds IS NOT NULL ORDER BY updated_at"
            ).fetchall()
        return {task: float(seconds) for task, seconds in rows}  # later rows win

    def report(self) -> dict[str, Any]:
        faults = self.events("fault")
        counts: dict[str, int] = {}
        for event in faults:
            key = f"{event.fault}:{event.code}"
            counts[key] = counts.get(key, 0) + 1
        return {
            "db": str(self.path),
            **self.totals(),
            "tasks": [asdict(s) for s in self.task_summaries()],
            "faults": {
                "counts": dict(sorted(counts.items())),
                "last": [asdict(e) for e in faults[-20:]],
            },
        }

    def export_csv(self, path: Path) -> int:
        """Write every message (with its task, when known) to CSV atomically; returns rows."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT m.received_at, m.topic, m.kind, m.payload_bytes, m.overhead_bytes,"
                " m.payload_id, t.task, t.version, t.outcome"
                " FROM messages m LEFT JOIN tasks t ON t.payload_id = m.payload_id ORDER BY m.id"
            ).fetchall()
        with atomic_path(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(
                [
                    "received_at",
                    "topic",
                    "kind",
                    "payload_bytes",
                    "overhead_bytes",
                    "payload_id",
                    "task",
                    "version",
                    "outcome",
                ]
            )
            writer.writerows(rows)
        return len(rows)
