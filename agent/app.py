"""The agent daemon's loop: receive -> reassemble -> verify -> install -> report.

paho's thread only enqueues (agent.link); everything here runs on the main thread, one stage per
collaborator:

- agent.receiver reassembles chunked payloads, each piece on disk before its ack;
- agent.task_queue verifies a complete payload once, applies the version policy and queues it
  durably before its ack; agent.installer installs the queued task that is due, and device faults
  (agent.faults) defer it with back-off;
- the model store (agent.models) is the one record of what is installed, read for status too, so
  a `plada-agent rollback` under the running daemon shows at once;
- agent.fault_report shows every fault in status and the trial log, with its cause;
- agent.metrics serves those records to Prometheus when ``[metrics] listen`` is set.

Nothing a payload or the device does makes the daemon exit: every failure is classified, shown
and either refused for good (payload faults) or retried (device faults).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent import systemd
from agent.applier import PipelineApplier
from agent.cause_watch import CauseWatch
from agent.errors import AgentError, ModelStoreError
from agent.fault_report import FaultReporter
from agent.faults import Fault, FaultClass, classify
from agent.fleet_state import FleetState, PendingTask
from agent.installer import Installer
from agent.link import Inbound, LinkEvent
from agent.models import open_store
from agent.pipeline import load_keys
from agent.ports import Applied, Applier, DaemonApplier, Link, ProgressFn
from agent.receiver import Complete, Receiver, Source
from agent.results import ResultPublisher
from agent.retirement import retire
from agent.revocation import revoke
from agent.status import AgentState, LastError, StatusReporter, compact_json
from agent.task_queue import TaskQueue
from agent.triallog import TrialLog, mqtt_overhead_bytes
from plada.chunks import Chunk, Manifest, parse_chunk, parse_manifest
from plada.errors import ChunkError, PladaError
from plada.payload import payload_digest
from plada.topics import TopicKind, TopicScheme

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.config import AgentConfig
    from agent.metrics import MetricsServer

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
_UNCLEAN_STOP = Fault(
    FaultClass.DEVICE,
    "UncleanStop",
    "the previous run of the agent ended without a clean stop (killed, crashed or lost power); "
    "downloads and installs in progress resume",
    "nothing to do if it is rare; otherwise look for OOM kills or crashes in the journal",
)


def subscription_record(config: AgentConfig) -> Path:
    """Where the link remembers what the broker session holds (agent.subscriptions)."""
    return Path(config.state.dir) / STATE_SUBDIR / "subscriptions.json"


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
        self.store = open_store(config)
        self.triallog = TrialLog(Path(config.state.dir))
        self.status = StatusReporter(
            device_id=config.device_id,
            device_class=config.device_class,
            topics=self.topics,
            group=config.mqtt.group,
        )
        self.watchdog = systemd.Watchdog()
        self.faults = FaultReporter(self.triallog)
        self._running_marker = self.dir / "running"
        if self._running_marker.exists():  # the previous run never reached its clean stop
            self.faults.report(_UNCLEAN_STOP)
        self.queue = TaskQueue(
            config,
            folder=self.dir,
            store=self.store,
            keys=dict(trusted_keys) if trusted_keys is not None else load_keys(config),
            reporter=self.faults,
        )
        self.installer = Installer(self.queue, store=self.store, applier=applier, events=self)
        self.receiver = Receiver(self.dir / "chunks", is_known=self.queue.known)
        self.results = ResultPublisher(
            config, folder=self.dir / "results", link=link, applier=applier, triallog=self.triallog
        )
        self.causes = CauseWatch(applier.watch_paths, interval_s=config.recovery.watch_interval_s)
        self._last_status_at = 0.0
        # What status last went out (its fields but the timestamp): a status that says nothing
        # new is not sent again (a thin link pays ~1 kB up and an acknowledgement down for it).
        self._last_status: dict[str, Any] | None = None
        self._progress_since: float | None = None  # when the current install's progress began
        self._progress_held = False  # a progress status is waiting for its interval
        # Home Assistant task configs sent on this connection: retained, so sent once each.
        self._announced: dict[str, bytes] = {}
        self._last_periodic = time.monotonic()
        self._last_traffic = time.monotonic()
        self._idle_work = True
        self._store_mtime: int | None = None
        # payload id -> the task whose topics its pieces came on (this run; after a restart a
        # resumed download is not checked against its topic)
        self._piece_tasks: dict[str, str] = {}
        self.metrics: MetricsServer | None = None
        task, version = self._serving()
        self.status.restore(task=task, version=version, last_error=self.state.last_error)
        self.status.pending = self.queue.view()
        self.faults.connect(self.on_fault)  # shows what start-up found

    @property
    def state(self) -> FleetState:
        return self.queue.state

    # -- lifecycle ------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until ``stop`` is set; returns the process exit code."""
        self._start_metrics()
        self.link.start()
        systemd.notify("READY=1")
        self._running_marker.touch()
        try:
            self._resume_downloads()
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
            if self.metrics is not None:
                self.metrics.stop()
                self.metrics = None
            self._running_marker.unlink(missing_ok=True)
        return 0

    def _start_metrics(self) -> None:
        """The Prometheus endpoint, when configured; an address it cannot bind is a device
        fault shown in status, not a reason to stop receiving tasks."""
        address = self.config.metrics.address
        if address is None:
            return
        # Imported here: prometheus_client is only loaded on devices that turn the endpoint on.
        from agent.metrics import AgentCollector, start_metrics

        collector = AgentCollector(
            self.config,
            store=self.store,
            triallog=self.triallog,
            fleet_state_path=self.queue.state_path,
            started_at=time.time(),
        )
        host, port = address
        try:
            self.metrics = start_metrics(collector, host=host, port=port)
        except OSError as exc:
            logger.error("metrics endpoint %s not started: %s", self.config.metrics.listen, exc)
            self.faults.report(classify(exc), message=f"metrics endpoint {host}:{port}: {exc}")
            return
        logger.info("metrics on http://%s/metrics", self.config.metrics.listen)

    def _resume_downloads(self) -> None:
        """Downloads cut by a restart continue from the pieces stored before it."""
        done = self.receiver.reload()
        resumed = [(d.owner, "complete") for d in done]
        resumed += [(o, f"{n} chunks held") for o, n in self.receiver.in_flight().items()]
        for owner, what in resumed:
            self.triallog.record_event(
                kind="resumed",
                payload_id=owner,
                message=f"download resumed after a restart: {what}",
            )
        for payload in done:
            self.queue.offer(payload.data, first_byte_at=payload.first_byte_at)
        # before any connect: the link subscribes them once the main loop resyncs it
        self._want_chunks()

    def _want_chunks(self, *, resync: int | None = None) -> None:
        """Tell the link which chunk topics are still missing (it subscribes exactly those)."""
        group = self.mqtt.group
        topics = [
            self.topics.task_chunk(group, index, source.task)
            for source, missing in self.receiver.missing()
            for index in missing
        ]
        self.link.want_chunks(topics, resync=resync)

    def _guarded(self, step: Callable[..., None], *args: object) -> None:
        """Run one step of the loop; an unexpected failure is a device fault, shown, not fatal."""
        try:
            step(*args)
        except Exception as exc:
            logger.exception("unexpected failure in the agent loop")
            self.faults.report(classify(exc))

    def _dispatch(self, item: Inbound | LinkEvent | None) -> None:
        if isinstance(item, Inbound):
            self._handle(item)
        elif isinstance(item, LinkEvent):
            self._link_event(item)
        self.installer.run_due()

    def _idle(self) -> None:
        """Warm the feature cache a block at a time while nothing else is going on."""
        after = self.mqtt.idle_warm_after_s
        if not self._idle_work or after <= 0 or self.queue.state.pending:
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
            heartbeat = now - self._last_periodic >= self.mqtt.status_interval_s
            if heartbeat:
                self._last_periodic = now
            self._refresh_installed()
            self.publish_status(force=True, heartbeat=heartbeat)
        elif self._progress_held:
            self.publish_status()
        deferred = any(p.failures for p in self.queue.state.pending.values())
        if self.causes.changed(armed=deferred):
            logger.info("corpus or encoder files changed: retrying deferred tasks now")
            self.queue.poke()

    def _store_changed(self) -> bool:
        try:
            mtime: int | None = self.store.state_path.stat().st_mtime_ns
        except OSError:
            mtime = None
        changed = mtime != self._store_mtime
        self._store_mtime = mtime
        return changed

    def _serving(self) -> tuple[str | None, int | None]:
        """(task, version) of the most recently installed head, from the store's record."""
        try:
            state = self.store.state()
        except ModelStoreError as exc:
            logger.warning("model store unreadable: %s", exc)
            return self.status.task, self.status.version
        self.status.records = dict(state.tasks)
        for task, record in sorted(state.tasks.items()):
            if record.installed is not None and record.installed == state.current:
                return task, record.version
        return None, None

    def _refresh_installed(self) -> None:
        """Status shows what the store's record says serves (one source of truth): a
        `plada-agent rollback --task T` under the running daemon shows at the next tick."""
        task, version = self._serving()
        self.status.installed(task=task, version=version)
        if task is None and self.status.state is AgentState.READY:
            self.status.state = AgentState.IDLE

    def _link_event(self, event: LinkEvent) -> None:
        if event.connected:
            self.triallog.record_event(
                kind="link", code="connected", message=event.reason, at=event.at
            )
            self._on_connected()
            # every message of the previous connection is handled: ask again for what is missing
            self._want_chunks(resync=event.connection)
            return
        self.status.disconnected(reason=event.reason, at=event.at)
        self.triallog.record_event(
            kind="link", code="disconnected", message=event.reason, at=event.at
        )

    def _on_connected(self) -> None:
        # A new connection sends every config again: the broker may have lost its retained ones.
        self._announced.clear()
        if self.mqtt.home_assistant:
            topic, body = self.status.home_assistant_discovery(
                prefix=self.mqtt.home_assistant_prefix
            )
            self.link.publish(topic, body, qos=0)  # sent again on every connection, as status
            for task, record in sorted(self.status.records.items()):
                # A task rolled back to no head by a revocation keeps its entity: Home Assistant
                # shows "none" and the release summary says why; a retired task's goes.
                revoked_to_none = bool(record.rolled_back) and record.retired is None
                self._announce_task(task, present=record.installed is not None or revoked_to_none)
        self.publish_status(force=True, heartbeat=True)
        self.results.republish()

    def publish_status(self, *, force: bool = False, heartbeat: bool = False) -> None:
        """Publish status. Progress (``force`` off: receiving, training) goes out at most once
        per ``progress_interval_s``, counted from the start of the install too, so an install
        that finishes within it sends only its ready status; ready, a fault or another forced
        one go at once. A status equal to the last one sent but for its timestamp is skipped
        unless it is a ``heartbeat`` (the periodic one, and the first on each connection)."""
        now = time.monotonic()
        if not force:
            if self._progress_since is None:
                self._progress_since = now
            since = max(self._progress_since, self._last_status_at)
            if now - since < self.mqtt.progress_interval_s:
                self._progress_held = True  # the loop's tick sends it once it is due
                return
        else:
            self._progress_since = None
        self._progress_held = False
        self.status.pending = self.queue.view()
        body = self.status.to_dict()
        fields = {k: v for k, v in body.items() if k != "updated_at"}
        if not heartbeat and self._last_status == fields:
            return
        self._last_status_at = now
        self._last_status = fields
        # QoS 0: a retained snapshot that the next one supersedes and every connect sends again;
        # QoS 1 would cost a PUBACK frame down the link besides the TCP acknowledgement.
        self.link.publish(self.topics.status(self.config.device_id), compact_json(body), qos=0)

    def _announce_task(self, task: str, *, present: bool) -> None:
        """A task's Home Assistant entity: its config, or an empty retained one (removed)."""
        if not self.mqtt.home_assistant:
            return
        topic, body = self.status.home_assistant_task_discovery(
            task, prefix=self.mqtt.home_assistant_prefix
        )
        body = body if present else b""
        if self._announced.get(topic) == body:
            return  # retained on the broker already: every install would resend ~1.4 kB
        self._announced[topic] = body
        self.link.publish(topic, body, qos=0)  # every connection announces all tasks again

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
            if payload_id is not None and not self.queue.known(payload_id):
                # a new whole payload replaces a partial one on the task's topics (chunks gone)
                self.receiver.supersede(Source(task=parsed.task if parsed else None))
                self._want_chunks()
            self.queue.offer(
                data, first_byte_at=inbound.received_at, topic_task=parsed.task if parsed else None
            )
        elif kind is TopicKind.RETIRED and data:
            self._retire(data, topic_task=parsed.task if parsed else None)
        elif kind is TopicKind.REVOKED and data:
            self._revoke(data, topic_task=parsed.task if parsed else None)
        elif isinstance(piece, ChunkError):
            self._junk(piece, inbound.topic)
        elif piece is not None:
            self._receive_piece(piece, data, inbound, topic_task=parsed.task if parsed else None)
            self._want_chunks()  # this chunk is on disk: unsubscribed; a new manifest's: subscribed

    def _retire(self, data: bytes, *, topic_task: str | None) -> None:
        done = retire(
            data,
            topic_task=topic_task,
            keys=self.queue.keys,
            allow_unsigned=self.config.trust.allow_unsigned,
            store=self.store,
            queue=self.queue,
        )
        if done is None:
            return
        tomb, outcome = done.tombstone, done.outcome
        removed = ", ".join(outcome.removed) or "no head"
        message = (
            f"retirement up to v{tomb.version} ignored: v{outcome.newer} is installed"
            if outcome.newer is not None
            else f"retired up to v{tomb.version}: removed {removed}; the record is kept"
        )
        self.triallog.record_event(
            kind="retired",
            payload_id=done.digest,
            task=tomb.task,
            version=tomb.version,
            message=message,
        )
        if outcome.newer is None:
            self.results.clear(tomb.task)
            self._announce_task(tomb.task, present=False)
        self._refresh_installed()
        self.publish_status(force=True)

    def _revoke(self, data: bytes, *, topic_task: str | None) -> None:
        done = revoke(
            data,
            topic_task=topic_task,
            keys=self.queue.keys,
            allow_unsigned=self.config.trust.allow_unsigned,
            store=self.store,
            queue=self.queue,
        )
        if done is None:
            return
        rev, outcome = done.revocation, done.outcome
        serving = f"v{outcome.serving}" if outcome.serving is not None else "no head"
        removed = ", ".join(outcome.removed) or "it was not installed here"
        self.triallog.record_event(
            kind="revoked",
            payload_id=rev.payload_id,
            task=rev.task,
            version=rev.version,
            message=f"v{rev.version} revoked (removed: {removed}); serving {serving}; the "
            "version is refused from now on",
        )
        if outcome.removed:
            # The retained result described the revoked version: withdrawn, not left to be
            # read as the task's current accuracy.
            self.results.clear(rev.task)
        self._refresh_installed()
        self._announce_task(rev.task, present=True)
        self.publish_status(force=True)

    def _junk(self, exc: ChunkError, topic: str) -> None:
        """A piece that belongs to no payload we can take: shown, nothing else changes."""
        self.faults.report(classify(exc), message=f"{topic}: {exc}")

    def _receive_piece(
        self, piece: Chunk | Manifest, data: bytes, inbound: Inbound, *, topic_task: str | None
    ) -> None:
        owner = piece.owner
        if self.queue.known(owner):
            return  # a stale retained piece of a payload already handled
        if topic_task is not None:  # checked against the payload once it is whole
            self._piece_tasks[owner] = topic_task
        try:
            result = self.receiver.add(
                piece, data, received_at=inbound.received_at, source=Source(task=topic_task)
            )
        except ChunkError as exc:  # the joined chunks fail the manifest: the payload is bad
            self._piece_tasks.pop(owner, None)
            self.queue.refuse(classify(exc), payload_id=owner)
            return
        if isinstance(result, Complete):
            self.queue.offer(
                result.data,
                first_byte_at=result.first_byte_at,
                topic_task=self._piece_tasks.pop(owner, None),
            )
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
        if fraction < 1.0:  # at 100 % ready (or a fault) follows at once and says it all
            self.publish_status()

    def on_fault(self, error: LastError) -> None:
        self.status.rejected(error)
        self.publish_status(force=True)

    def on_installed(self, pending: PendingTask, applied: Applied | None, ready_at: float) -> None:
        self.status.ready(task=pending.task, version=pending.version)
        self._refresh_installed()
        self._announce_task(pending.task, present=True)
        self.publish_status(force=True)
        self.results.publish(pending, applied=applied, ready_at=ready_at)

    @property
    def agent_state(self) -> AgentState:
        return self.status.state
