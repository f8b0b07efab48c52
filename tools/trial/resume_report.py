"""Turn one resume scenario's logs and counters into numbers: what the broker sent to the device
per connection, which of it the device already held, what the device received, what the wire
carried. Pure functions over text and records, so they are unit-tested without a network.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from plada.chunks import split_payload
from plada.topics import TopicScheme
from tools.trial.counters import LinkCounters

_LINE = re.compile(r"^(\d+): (.*)$")
_SENT = re.compile(r"Sending PUBLISH to (\S+) \(d(\d), q\d, r(\d), m\d+, '([^']*)'")
_SESSION = re.compile(r"connected \(session present: (True|False)\)")


@dataclass
class Connection:
    """What the broker sent to one client during one connection (in its log)."""

    connected_at: int
    sent: Counter[str] = field(default_factory=Counter)
    dup: int = 0
    retained: int = 0


def broker_connections(log: str, *, client_id: str, topic_prefix: str) -> list[Connection]:
    """Split the broker's log at each connect of ``client_id``; count task PUBLISHes per topic."""
    connections: list[Connection] = []
    for line in log.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        at, text = int(match[1]), match[2]
        if text.startswith("New client connected") and f" as {client_id} " in text:
            connections.append(Connection(connected_at=at))
            continue
        sent = _SENT.match(text)
        if sent and sent[1] == client_id and sent[4].startswith(topic_prefix) and connections:
            current = connections[-1]
            current.sent[sent[4]] += 1
            current.dup += sent[2] == "1"
            current.retained += sent[3] == "1"
    return connections


def task_topics(
    group: str, data: bytes, *, max_chunk_bytes: int, task: str | None = None
) -> dict[str, int]:
    """Every task message ``plada-build publish`` sends for a payload: topic -> bytes (on the
    task's own topics; without `task`, the one-task topics of earlier builders)."""
    scheme = TopicScheme()
    if len(data) <= max_chunk_bytes:
        return {scheme.task(group, task): len(data)}
    chunked = split_payload(data, max_chunk_bytes=max_chunk_bytes)
    topics = {scheme.task_manifest(group, task): len(chunked.manifest)}
    topics |= {scheme.task_chunk(group, i, task): len(c) for i, c in enumerate(chunked.chunks)}
    return topics


def analyse(
    *,
    kind: str,
    protocol: str,
    drop_s: float,
    needed: dict[str, int],
    payload_bytes: int,
    group: str,
    client_id: str,
    broker_log: str,
    agent_log: str,
    held_topics: list[str],
    received: list[tuple[float, str, int]],
    counters: LinkCounters,
    ready_s: float,
    task: str | None = None,
) -> dict[str, Any]:
    prefix = TopicScheme().task(group, task)  # each scenario's group holds one task
    connections = broker_connections(broker_log, client_id=client_id, topic_prefix=prefix)
    sent_total: Counter[str] = sum((c.sent for c in connections), Counter())
    # the download starts in the first connection that carried task messages
    first = next((i for i, c in enumerate(connections) if c.sent), len(connections))
    later = connections[first + 1 :]
    sent_later: Counter[str] = sum((c.sent for c in later), Counter())
    got = Counter(topic for _, topic, _ in received if topic.startswith(prefix))
    sessions = _SESSION.findall(agent_log)
    sent_bytes = sum(needed.get(t, 0) * n for t, n in sent_total.items())
    summary = {
        "scenario": kind,
        "mqtt": protocol,
        "messages_needed": len(needed),
        "broker_sends": sum(sent_total.values()),
        "sends_after_reconnect": sum(sent_later.values()),
        "held_at_drop": len(held_topics),
        "held_sent_again": sum(sent_later[t] for t in held_topics),
        "device_received": sum(got.values()),
        "device_duplicates": sum(got.values()) - len(got),
        "wire_down_bytes": counters.down.wire_bytes,
        "wire_to_needed": round(counters.down.wire_bytes / sum(needed.values()), 2),
        "ready_s": round(ready_s, 1),
    }
    return {
        "summary": summary,
        "drop_s": drop_s,
        "payload_bytes": payload_bytes,
        "task_messages": needed,
        "bytes_needed": sum(needed.values()),
        "broker_sent_bytes": sent_bytes,
        "held_at_drop_topics": held_topics,
        "connections": [
            {
                "connected_at": c.connected_at,
                "task_publishes": sum(c.sent.values()),
                "dup_flag": c.dup,
                "retain_flag": c.retained,
                "per_topic": dict(sorted(c.sent.items())),
            }
            for c in connections
        ],
        "device_received_per_topic": dict(sorted(got.items())),
        "session_present_on_connect": [s == "True" for s in sessions],
        "kernel": counters.model_dump(),
    }
