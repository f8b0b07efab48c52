"""The agent's Prometheus endpoint (``[metrics] listen``), off unless configured.

Every value is read from the agent's own records when Prometheus scrapes, so nothing kept in
memory can drift from what status and ``plada-agent trial-report`` show: installed tasks from the
model store's ``state.json``, pending tasks from the fleet state file, bytes, faults, training
times and link events from the SQLite trial log. A scrape only reads; it runs on the HTTP
server's thread, each read with its own SQLite connection (the log is in WAL mode).

Metrics (all prefixed ``plada_agent_``):

- ``info{device_id, device_class, encoder, encoder_backend, head_backend, plada_version}``
- ``task_installed_version{task}``: version serving each installed task
- ``tasks_installed``, ``tasks_pending``; ``task_pending_version{task}``
- ``received_bytes_total{task, kind}``, ``received_overhead_bytes_total{task, kind}``,
  ``received_messages_total{task, kind}``: MQTT payload bytes (and the framing estimate) per
  task and topic kind (task, manifest, chunk, retired, other)
- ``train_seconds{task}``: head training time of each task's latest install
- ``faults_total{fault, code}``: fault events by class (payload, device) and code
- ``link_connected`` (0/1), ``link_disconnects_total``
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Thread
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from pydantic import ValidationError

import plada
from agent.errors import ModelStoreError
from agent.fleet_state import FleetState
from agent.models import ModelStore
from agent.triallog import TrialLog
from plada.topics import TopicScheme

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from agent.config import AgentConfig

logger = logging.getLogger(__name__)

PREFIX = "plada_agent"


class AgentCollector:
    """A prometheus_client collector over one device's records (see the module docstring)."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: ModelStore,
        triallog: TrialLog,
        fleet_state_path: Path,
        started_at: float,
    ) -> None:
        self.config = config
        self.store = store
        self.triallog = triallog
        self.fleet_state_path = fleet_state_path
        self.topics: TopicScheme = config.mqtt.topics
        # A `connected` event from before this start is the previous run's link, not this one's.
        self.started_at = started_at

    def collect(self) -> Iterator[Metric]:
        yield self._info()
        yield from self._tasks()
        yield from self._pending()
        yield from self._received()
        yield from self._faults_and_link()

    def _info(self) -> Metric:
        info = InfoMetricFamily(f"{PREFIX}", "this device and what it runs")
        config = self.config
        info.add_metric(
            [],
            {
                "device_id": config.device_id,
                "device_class": config.device_class,
                "encoder": config.encoder.file.stem,
                "encoder_backend": config.encoder.backend,
                "head_backend": config.head.backend,
                "plada_version": plada.__version__,
            },
        )
        return info

    def _tasks(self) -> Iterator[Metric]:
        version = GaugeMetricFamily(
            f"{PREFIX}_task_installed_version",
            "version of the head serving each installed task",
            labels=["task"],
        )
        count = GaugeMetricFamily(f"{PREFIX}_tasks_installed", "tasks with an installed head")
        try:
            records = self.store.state().tasks
        except ModelStoreError as exc:  # shown as no tasks; status names the damage
            logger.warning("metrics: model store unreadable: %s", exc)
            records = {}
        installed = {
            task: r.version
            for task, r in sorted(records.items())
            if r.installed is not None and r.version is not None
        }
        for task, v in installed.items():
            version.add_metric([task], v)
        count.add_metric([], len(installed))
        train = GaugeMetricFamily(
            f"{PREFIX}_train_seconds",
            "head training seconds of each task's latest install",
            labels=["task"],
        )
        for task, seconds in sorted(self.triallog.last_train_seconds().items()):
            train.add_metric([task], seconds)
        yield from (version, count, train)

    def _pending(self) -> Iterator[Metric]:
        count = GaugeMetricFamily(
            f"{PREFIX}_tasks_pending", "accepted tasks waiting to be installed"
        )
        version = GaugeMetricFamily(
            f"{PREFIX}_task_pending_version",
            "version of each task waiting to be installed",
            labels=["task"],
        )
        pending = self._read_pending()
        for task, v in sorted(pending.items()):
            version.add_metric([task], v)
        count.add_metric([], len(pending))
        yield from (count, version)

    def _read_pending(self) -> dict[str, int]:
        # Read without agent.fleet_state.load_state: that moves a damaged file aside, a repair
        # that belongs to the daemon's thread, never to a scrape.
        try:
            raw = json.loads(self.fleet_state_path.read_text(encoding="utf-8"))
            state = FleetState.model_validate(raw)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, ValidationError) as exc:
            logger.warning("metrics: fleet state unreadable: %s", exc)
            return {}
        return {task: p.version for task, p in state.pending.items()}

    def _received(self) -> Iterator[Metric]:
        labels = ["task", "kind"]
        payload = CounterMetricFamily(
            f"{PREFIX}_received_bytes", "MQTT payload bytes received", labels=labels
        )
        overhead = CounterMetricFamily(
            f"{PREFIX}_received_overhead_bytes",
            "estimated MQTT framing around the received payloads (PUBLISH header, ack)",
            labels=labels,
        )
        messages = CounterMetricFamily(
            f"{PREFIX}_received_messages", "MQTT messages received", labels=labels
        )
        sums: dict[tuple[str, str], list[int]] = {}
        for row in self.triallog.message_totals():
            parsed = self.topics.parse(row.topic)
            # The topic names the task (multi-task scheme); on the one-task topic its payload does.
            task = (parsed.task if parsed else None) or row.task or ""
            acc = sums.setdefault((task, row.kind), [0, 0, 0])
            acc[0] += row.payload_bytes
            acc[1] += row.overhead_bytes
            acc[2] += row.messages
        for key, (pbytes, obytes, n) in sorted(sums.items()):
            payload.add_metric(list(key), pbytes)
            overhead.add_metric(list(key), obytes)
            messages.add_metric(list(key), n)
        yield from (payload, overhead, messages)

    def _faults_and_link(self) -> Iterator[Metric]:
        faults = CounterMetricFamily(
            f"{PREFIX}_faults",
            "faults by class (payload, device) and code",
            labels=["fault", "code"],
        )
        for (fault, code), n in sorted(self.triallog.fault_counts().items()):
            faults.add_metric([fault, code], n)
        link = self.triallog.link_summary()
        connected = (
            link.last_code == "connected"
            and link.last_at is not None
            and link.last_at >= self.started_at
        )
        yield faults
        yield GaugeMetricFamily(
            f"{PREFIX}_link_connected", "1 while connected to the broker", value=int(connected)
        )
        yield CounterMetricFamily(
            f"{PREFIX}_link_disconnects",
            "broker disconnects recorded in the trial log",
            value=link.disconnects,
        )


@dataclass
class MetricsServer:
    """The endpoint's HTTP server, on its own registry and daemon thread."""

    server: WSGIServer
    thread: Thread
    registry: CollectorRegistry

    @property
    def port(self) -> int:
        return int(self.server.server_port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_metrics(collector: AgentCollector, *, host: str, port: int) -> MetricsServer:
    """Serve `collector` on http://host:port/metrics; OSError if the address cannot be bound."""
    # Its own registry: the global default one would add this process's Python and GC metrics
    # and anything a library registers there; the endpoint shows the device, nothing else.
    registry = CollectorRegistry()
    registry.register(collector)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server=server, thread=thread, registry=registry)
