"""One row of fleet.json from what a rollout measured: the coordinator's clock around the
publish, every device's own trial-log record, and the processes' CPU and memory. Pure functions,
so the arithmetic is tested without a broker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.fleet.payloads import BudgetPayload
from bench.fleet.procstat import ProcSample
from bench.fleet.protocol import DeviceReport, PayloadRecord


@dataclass(frozen=True)
class Usage:
    """CPU seconds and memory of one process or a group of them, at a moment or over a window."""

    cpu_s: float
    rss_mb: float
    peak_rss_mb: float
    at: float = 0.0  # monotonic time of the reading (for a window: its length)

    @classmethod
    def of(cls, sample: ProcSample) -> Usage:
        return cls(sample.cpu_s, sample.rss_mb, sample.peak_rss_mb, time.monotonic())

    def since(self, before: Usage) -> Usage:
        """The window from `before` to this reading: CPU used in it, memory at its end."""
        return Usage(self.cpu_s - before.cpu_s, self.rss_mb, self.peak_rss_mb, self.at - before.at)

    def row(self, *, agents: int, base_mb: float | None) -> dict[str, float]:
        """CPU over the window; memory, and memory per agent over `base_mb` (the process's
        own before any agent; None: not known)."""
        seconds = max(self.at, 1e-9)
        per_agent = self.rss_mb - (base_mb if base_mb is not None else 0.0)
        return {
            "cpu_s": round(self.cpu_s, 3),
            "cpu_percent": round(100 * self.cpu_s / seconds, 1),
            "rss_mb": round(self.rss_mb, 1),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "rss_per_agent_kb": round(1024 * per_agent / max(agents, 1), 1),
        }


@dataclass(frozen=True)
class Delivery:
    """One publish to the fleet, as the coordinator saw it (wall-clock times, like the devices')."""

    payload: BudgetPayload
    payload_id: str
    messages: int  # MQTT messages the publish sent (manifest + chunks)
    started: float  # the publish call
    acked: float  # every message acknowledged by the broker
    done: float  # every worker reported its agents ready (or its timeout passed)
    not_ready: list[str]
    results_seen: dict[str, float]  # device -> its result message reached the builder's client
    broker: Usage
    clients: Usage
    loadavg_1m: float
    agents: int


def _record(device: DeviceReport, payload_id: str) -> PayloadRecord:
    for record in device.payloads:
        if record.payload_id == payload_id:
            return record
    return PayloadRecord(payload_id=payload_id)


def _r(value: float) -> float:
    return round(float(value), 4)


def fleet_row(
    delivery: Delivery,
    devices: list[DeviceReport],
    *,
    workers: int,
    chunk_bytes: int,
    connect: dict[str, float | None],
    broker_kind: str,
) -> dict[str, Any]:
    """The fleet.json row of one delivery (keys as bench/schema/fleet.py reads them)."""
    records = [_record(d, delivery.payload_id) for d in devices]
    ready = [r for r in records if r.outcome == "ready" and r.ready_at is not None]
    ready_s = np.sort([r.ready_at - delivery.started for r in ready])  # type: ignore[operator]
    first_byte = [r.first_byte_at for r in ready if r.first_byte_at is not None]
    to_model = [r.ready_at - r.first_byte_at for r in ready if r.first_byte_at is not None]  # type: ignore[operator]
    wire = np.array([r.payload_bytes + r.overhead_bytes for r in records], dtype=np.float64)
    seen = [at - delivery.started for at in delivery.results_seen.values()]
    lost = delivery.agents - len(ready)
    return {
        "agents": delivery.agents,
        "workers": workers,
        "broker": broker_kind,
        "budget_bytes": delivery.payload.budget_bytes,
        "payload_bytes": len(delivery.payload.data),
        "kept_images": delivery.payload.keep,
        "chunk_bytes": chunk_bytes,
        "messages": delivery.messages,
        "publish_acked_s": _r(delivery.acked - delivery.started),
        "first_byte_s": _r(min(first_byte) - delivery.started) if first_byte else None,
        "ready_first_s": _r(ready_s[0]) if len(ready_s) else None,
        "ready_median_s": _r(np.median(ready_s)) if len(ready_s) else None,
        "ready_p90_s": _r(np.percentile(ready_s, 90)) if len(ready_s) else None,
        "all_ready_s": _r(ready_s[-1]) if len(ready_s) and not lost else None,
        "time_to_model_median_s": _r(np.median(to_model)) if to_model else None,
        "results_seen_by_builder_s": _r(max(seen)) if len(seen) == delivery.agents else None,
        "results_seen": len(seen),
        "lost": lost,
        "incomplete_devices": sum(1 for r in records if r.messages < delivery.messages),
        "duplicate_messages": int(sum(max(0, r.messages - delivery.messages) for r in records)),
        "wire_bytes_per_device": {
            "mean": float(wire.mean()) if len(wire) else 0.0,
            "min": int(wire.min()) if len(wire) else 0,
            "max": int(wire.max()) if len(wire) else 0,
        },
        "payload_bytes_per_device": float(np.mean([r.payload_bytes for r in records] or [0])),
        "overhead_bytes_per_device": float(np.mean([r.overhead_bytes for r in records] or [0])),
        "messages_per_device": float(np.mean([r.messages for r in records] or [0])),
        "window_s": _r(delivery.done - delivery.started),
        "broker_usage": delivery.broker.row(
            agents=delivery.agents, base_mb=connect.get("broker_idle_rss_mb")
        ),
        "client_usage": delivery.clients.row(
            agents=delivery.agents, base_mb=connect.get("clients_base_rss_mb")
        ),
        "connect": connect,
        "loadavg_1m": delivery.loadavg_1m,
    }
