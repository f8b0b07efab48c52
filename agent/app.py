"""The agent daemon's loop: receive -> reassemble -> verify -> install -> report.

paho's thread only enqueues (agent.link); everything here runs on the main thread, one stage per
collaborator:

- agent.receiver reassembles chunked payloads, each piece on disk before its ack;
- agent.installer verifies a complete payload once, applies the version policy, queues it durably
  before its ack, installs it, and retries after device faults (agent.faults) with back-off;
- the model store (agent.models) is the one record of what is installed, read for status too, so
  a `plada-agent rollback` under the running daemon shows at once;
- agent.status and agent.triallog report every fault with its cause.

Nothing a payload or the device does makes the daemon exit: every failure is classified, shown
and either refused for good (payload faults) or retried (device faults).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from agent import systemd
from agent.applier import PipelineApplier, ProbeResult
from agent.errors import AgentError, ModelStoreError
from agent.faults import Fault, classify
from agent.fleet_state import FleetState, PendingTask
from agent.installer import Applied, Applier, Installer, ProgressFn
from agent.link import Inbound, LinkEvent
from agent.models import ModelStore
from agent.pipeline import load_keys
from agent.receiver import Complete, Receiver
from agent.status import AgentState, LastError, StatusReporter, TaskResult
from agent.triallog import TrialLog, mqtt_overhead_bytes
from plada.atomic import write_bytes_atomic
from plada.chunks import Chunk, Manifest, parse_chunk, parse_manifest
from plada.errors import ChunkError, PladaError
from plada.payload import payload_digest
from plada.topics import TopicKind, TopicScheme

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.config import AgentConfig

__all__ = [
    "AgentApp",
    "Applied",
    "Applier",
    "DaemonApplier",
    "FleetState",
    "PipelineApplier",
    "ProgressFn",
]

logger = logging.getLogger(__name__)

STATE_SUBDIR = "fleet"
_STATUS_MIN_INTERVAL_S = 0.5  # progress updates are rate-limited


class DaemonApplier(Applier, Protocol):
    """What the daemon needs beyond installing: idle work, fault-cause files, the probe set."""

    def warm_step(self, should_stop: Callable[[], bool]) -> bool: ...
    def watch_paths(self) -> list[Path]: ...
    def evaluate_probe(self) -> ProbeResult | None: ...


class Link(Protocol):
    inbox: queue.Queue[Inbound | LinkEvent]

    @property
    def mqtt5(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def ack(self, inbound: Inbound) -> None: ...
    def publish(self, topic: str, payload: bytes, *, retain: bool = True, qos: int = 1) -> None: ...


class AgentApp:
    def __init__(
        self,
        config: AgentConfig,
        *,
        link: Link,
        applier: DaemonApplier,
        stop: threading.Event,
        trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.topics: TopicScheme = config.mqtt.topics
        self.link = link
        self.applier = applier
        self.stop = stop
        self.dir = Path(config.state.dir) / STATE_SUBDIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store = ModelStore(config.state.dir)
        self.triallog = TrialLog(Path(config.state.dir))
        self.status = StatusReporter(
            device_id=config.device_id, device_class=config.device_class, topics=self.topics
        )
        self.watchdog = systemd.Watchdog()
        self.installer = Installer(
            config,
            folder=self.dir,
            store=self.store,
            applier=applier,
            keys=dict(trusted_keys) if trusted_keys is not None else load_keys(config),
            triallog=self.triallog,
            events=self,
        )
        self.receiver = Receiver(self.dir / "chunks", is_known=self.installer.known)
        self._last_status_at = 0.0
        self._last_periodic = time.monotonic()
        self._last_traffic = time.monotonic()
        self._idle_work = True
        self._store_mtime: int | None = None
        self._watch: tuple[tuple[str, int, int], ...] | None = None
        self._last_watch = 0.0
        task, version = self._serving()
        self.status.restore(task=task, version=version, last_error=self.state.last_error)
        self.status.pending = self.installer.view()
        for error in self.installer.startup_faults:
            self.status.rejected(error)

    @property
    def state(self) -> FleetState:
        return self.installer.state

    # -- lifecycle ------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until ``stop`` is set; returns the process exit code."""
        self.link.start()
        systemd.notify("READY=1")
        try:
            for done in self.receiver.reload():
                self.installer.offer(done.data, first_byte_at=done.first_byte_at)
            while not self.stop.is_set():
                try:
                    item = self.link.inbox.get(timeout=min(0.25, self.mqtt.status_interval_s))
                except queue.Empty:
                    item = None
                    self._idle()
                self._guarded(self._dispatch, item)
                self._guarded(self._tick)
        finally:
            systemd.notify("STOPPING=1")
            self.link.stop()
        return 0

    def _guarded(self, step: Callable[..., None], *args: object) -> None:
        """Run one step of the loop; an unexpected failure is a device fault, shown, not fatal."""
        try:
            step(*args)
        except Exception as exc:
            logger.exception("unexpected failure in the agent loop")
            self.on_fault(_error(classify(exc)))

    def _dispatch(self, item: Inbound | LinkEvent | None) -> None:
        if isinstance(item, Inbound):
            self._handle(item)
        elif isinstance(item, LinkEvent):
            self._link_event(item)
        self.installer.run_due()

    def _idle(self) -> None:
        """Warm the feature cache a block at a time while nothing else is going on."""
        after = self.mqtt.idle_warm_after_s
        if not self._idle_work or after <= 0 or self.installer.state.pending:
            return
        if self.receiver.busy or time.monotonic() - self._last_traffic < after:
            return
        steps = 0

        def should_stop() -> bool:
            nonlocal steps
            steps += 1
            return steps > 1 or self.stop.is_set() or not self.link.inbox.empty()

        try:
            self._idle_work = self.applier.warm_step(should_stop)
        except (AgentError, PladaError) as exc:
            logger.warning("idle feature-cache warming stopped: %s", exc)
            self._idle_work = False
        self.watchdog.tick()

    def _tick(self) -> None:
        self.watchdog.tick()
        now = time.monotonic()
        if self._store_changed() or now - self._last_periodic >= self.mqtt.status_interval_s:
            self._last_periodic = now
            self._refresh_installed()
            self.publish_status(force=True)
        if now - self._last_watch >= self.config.recovery.watch_interval_s:
            self._last_watch = now
            self._check_causes()

    def _check_causes(self) -> None:
        """Retry deferred tasks at once when a file their fault may come from changed."""
        if not any(p.failures for p in self.installer.state.pending.values()):
            self._watch = None
            return
        signature = _stat_signature(self.applier.watch_paths())
        if self._watch is not None and signature != self._watch:
            logger.info("corpus or encoder files changed: retrying deferred tasks now")
            self.installer.poke()
        self._watch = signature

    def _store_changed(self) -> bool:
        try:
            mtime = self.store.state_path.stat().st_mtime_ns
        except OSError:
            mtime = None
        changed = mtime != self._store_mtime
        self._store_mtime = mtime
        return changed

    def _serving(self) -> tuple[str | None, int | None]:
        """(task, version) of the head predictions use, from the store's record."""
        try:
            state = self.store.state()
        except ModelStoreError as exc:
            logger.warning("model store unreadable: %s", exc)
            return self.status.task, self.status.version
        for task, record in sorted(state.tasks.items()):
            if record.installed is not None and record.installed == state.current:
                return task, record.version
        return None, None

    def _refresh_installed(self) -> None:
        """Status shows what the store's record says serves (one source of truth): a
        `plada-agent rollback` under the running daemon shows at the next tick."""
        task, version = self._serving()
        self.status.installed(task=task, version=version)
        self.status.pending = self.installer.view()
        if task is None and self.status.state is AgentState.READY:
            self.status.state = AgentState.IDLE

    def _link_event(self, event: LinkEvent) -> None:
        if event.connected:
            self.triallog.record_event(kind="link", code="connected", message=event.reason)
            self._on_connected()
            return
        at = time.time()
        self.status.disconnected(reason=event.reason, at=at)
        self.triallog.record_event(kind="link", code="disconnected", message=event.reason, at=at)

    def _on_connected(self) -> None:
        if self.mqtt.home_assistant:
            topic, body = self.status.home_assistant_discovery(
                prefix=self.mqtt.home_assistant_prefix
            )
            self.link.publish(topic, body)
        self.publish_status(force=True)
        # Results are retained; republishing them after every (re)connect covers a crash between
        # recording a task and publishing its result, and a broker that lost its retained store.
        for path in sorted((self.dir / "results").glob("*.json")):
            self.link.publish(
                self.topics.result(self.config.device_id, path.stem), path.read_bytes()
            )

    def publish_status(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_status_at < _STATUS_MIN_INTERVAL_S:
            return
        self._last_status_at = now
        self.status.pending = self.installer.view()
        self.link.publish(self.topics.status(self.config.device_id), self.status.to_json())

    # -- receiving ------------------------------------------------------------------------------
    def _handle(self, inbound: Inbound) -> None:
        try:
            self._receive(inbound)
        finally:
            # Acked even after a device fault: the retained task comes back at the next connect.
            self.link.ack(inbound)

    def _receive(self, inbound: Inbound) -> None:
        self._last_traffic = time.monotonic()
        parsed = self.topics.parse(inbound.topic)
        kind = parsed.kind if parsed else None
        data = inbound.payload
        piece: Chunk | Manifest | ChunkError | None = None
        payload_id: str | None = None
        if data and kind in (TopicKind.CHUNK, TopicKind.MANIFEST):
            try:  # the header is parsed once, here, and the parsed piece passed down
                piece = parse_manifest(data) if kind is TopicKind.MANIFEST else parse_chunk(data)
                payload_id = piece.owner
            except ChunkError as exc:
                piece = exc
        elif data and kind is TopicKind.TASK:
            payload_id = payload_digest(data)
        self.triallog.record_message(
            topic=inbound.topic,
            kind=kind.value if kind else "other",
            payload_bytes=len(data),
            overhead_bytes=mqtt_overhead_bytes(
                inbound.topic, len(data), qos=inbound.qos, mqtt5=self.link.mqtt5
            ),
            received_at=inbound.received_at,
            payload_id=payload_id,
        )
        if kind is TopicKind.TASK and data:
            self.installer.offer(data, first_byte_at=inbound.received_at)
        elif isinstance(piece, ChunkError):
            self._junk(piece, inbound.topic)
        elif piece is not None:
            self._receive_piece(piece, data, inbound)

    def _junk(self, exc: ChunkError, topic: str) -> None:
        self.on_fault(_error(classify(exc), message=f"{topic}: {exc}"))
        self.triallog.record_event(
            kind="fault", fault="payload", code=type(exc).__name__, message=f"{topic}: {exc}"
        )

    def _receive_piece(self, piece: Chunk | Manifest, data: bytes, inbound: Inbound) -> None:
        owner = piece.owner
        if self.installer.known(owner):
            return  # a stale retained piece of a payload already handled
        try:
            result = self.receiver.add(piece, data, received_at=inbound.received_at)
        except ChunkError as exc:  # the joined chunks fail the manifest: the payload is bad
            self.installer.refuse(classify(exc), payload_id=owner)
            return
        if isinstance(result, Complete):
            self.installer.offer(result.data, first_byte_at=result.first_byte_at)
            return
        if result.error is not None:
            self._junk(result.error, inbound.topic)
        if result.missing is not None:
            self.status.receiving(100.0 * result.received / (result.received + result.missing))
            self.publish_status()

    # -- installer events -----------------------------------------------------------------------
    def on_progress(self, task: str, version: int, fraction: float, stage: str) -> None:
        self.watchdog.tick()
        self.status.training(task=task, version=version, progress=100 * fraction, detail=stage)
        self.publish_status()

    def on_fault(self, error: LastError) -> None:
        self.status.rejected(error)
        self.publish_status(force=True)

    def on_installed(self, pending: PendingTask, applied: Applied | None, ready_at: float) -> None:
        self.status.ready(task=pending.task, version=pending.version)
        self._refresh_installed()
        self.publish_status(force=True)
        self._publish_result(pending, applied=applied, ready_at=ready_at)

    def _publish_result(
        self, pending: PendingTask, *, applied: Applied | None, ready_at: float
    ) -> None:
        summary = self.triallog.task_summary(pending.payload_id)
        try:
            probe = self.applier.evaluate_probe()
        except Exception as exc:
            logger.warning("probe evaluation failed: %s", exc)
            probe = None
        result = TaskResult(
            device_id=self.config.device_id,
            device_class=self.config.device_class,
            task=pending.task,
            version=pending.version,
            payload_id=pending.payload_id,
            num_indices=applied.num_indices if applied else -1,
            bytes_received=summary.payload_bytes if summary else 0,
            messages=summary.messages if summary else 0,
            time_to_model_s=round(ready_at - pending.first_byte_at, 3),
            train_seconds=round(applied.train_seconds, 3) if applied else 0.0,
            train_accuracy=applied.train_accuracy if applied else None,
            probe_accuracy=probe.accuracy if probe else None,
            probe_size=probe.images if probe else None,
            finished_at=ready_at,
            extra={"resumed_after_restart": applied is None},
            probe_skipped=probe.skipped if probe else 0,
        )
        body = result.to_json()
        write_bytes_atomic(_mkdir(self.dir / "results") / f"{pending.task}.json", body)
        self.link.publish(self.topics.result(self.config.device_id, pending.task), body)

    @property
    def agent_state(self) -> AgentState:
        return self.status.state


def _error(fault: Fault, *, message: str | None = None) -> LastError:
    return LastError(
        code=fault.code,
        message=message or fault.message,
        at=time.time(),
        fault=fault.fault_class.value,
        hint=fault.hint,
    )


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _stat_signature(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), -1, -1))
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)
