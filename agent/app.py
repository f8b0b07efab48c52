"""The agent daemon's loop: receive -> reassemble -> verify -> train -> report.

paho's thread only enqueues (agent.link); everything here runs on the main thread. A task message
is acknowledged only after its effect is durably recorded under ``<state>/fleet/``:

- a whole payload (or one reassembled from chunks) that passes the signature and version checks is
  written to ``pending.bin`` and marked pending in ``state.json`` before the ack, so a device killed
  mid-training resumes the task after a restart and completes it exactly once (the model store's
  current payload digest tells whether the kill came after the model was stored);
- each chunk is written under ``chunks/<payload sha256>/`` before its ack, so a download interrupted
  by a broker or device restart resumes where it stopped;
- a rejected payload is remembered (the error shown in status) and acked; the daemon goes on.

Idempotent: the same payload again does nothing; for the same task a higher version supersedes, a
lower one is rejected, and the same version with different content is rejected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent import systemd
from agent.errors import AgentError, TaskRejectedError
from agent.link import Inbound, LinkEvent
from agent.status import AgentState, LastError, StatusReporter, TaskResult
from agent.triallog import TrialLog, mqtt_overhead_bytes
from plada.atomic import write_bytes_atomic
from plada.chunks import Reassembler
from plada.errors import ChunkError, PayloadError, PladaError
from plada.payload import decode_payload, payload_digest
from plada.signing import load_trusted_keys
from plada.topics import TopicKind, TopicScheme

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.config import AgentConfig

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
STATE_SUBDIR = "fleet"
MAX_ATTEMPTS = 3  # a payload that crashes training this often is rejected, not retried forever
_MAX_REJECTED_REMEMBERED = 64
_MAX_ASSEMBLING = 3  # payloads being reassembled at once
_STATUS_MIN_INTERVAL_S = 0.5  # progress updates are rate-limited


class Applied(Protocol):
    """What an applier returns (agent.pipeline.AppliedTask has these attributes)."""

    @property
    def task(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def num_indices(self) -> int: ...
    @property
    def train_seconds(self) -> float: ...
    @property
    def train_accuracy(self) -> float: ...


class Applier(Protocol):
    """Turns verified payload bytes into a stored model (the real one wraps agent.pipeline)."""

    def apply(self, data: bytes, *, progress: ProgressFn) -> Applied: ...

    def installed_digest(self) -> str | None:
        """Payload digest of the model currently stored, if any."""
        ...

    def evaluate_probe(self) -> tuple[float, int] | None:
        """(accuracy, images) of the current model on the probe set, if one is configured."""
        ...

    def warm_step(self, should_stop: Callable[[], bool]) -> bool:
        """Idle work: embed a little more of the corpus; False once nothing is left to do."""
        ...


class Link(Protocol):
    inbox: queue.Queue[Inbound | LinkEvent]

    @property
    def mqtt5(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def ack(self, inbound: Inbound) -> None: ...
    def publish(self, topic: str, payload: bytes, *, retain: bool = True, qos: int = 1) -> None: ...


@dataclass
class FleetState:
    """Durable task bookkeeping (``<state>/fleet/state.json``)."""

    installed: dict[str, Any] | None = None  # task, version, payload_id
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> version, id
    pending: dict[str, Any] | None = None  # payload_id, task, version, first_byte_at, attempts
    rejected: list[str] = field(default_factory=list)  # payload ids, newest last
    last_error: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path) -> FleetState:
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise AgentError(f"{path}: fleet state unreadable ({exc}); move it away") from exc

    def save(self, path: Path) -> None:
        _write_atomic(path, json.dumps(asdict(self), sort_keys=True, indent=1).encode("utf-8"))

    def known(self, payload_id: str) -> bool:
        """True if this payload was already applied, is pending, or was rejected."""
        if payload_id in self.rejected:
            return True
        if self.pending and self.pending["payload_id"] == payload_id:
            return True
        return any(v["payload_id"] == payload_id for v in self.versions.values())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)


class AgentApp:
    def __init__(
        self,
        config: AgentConfig,
        *,
        link: Link,
        applier: Applier,
        stop: threading.Event,
        trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self.config = config
        self.mqtt = config.mqtt
        self.topics: TopicScheme = config.mqtt.topics
        self.link = link
        self.applier = applier
        self.stop = stop
        self.keys = (
            dict(trusted_keys)
            if trusted_keys is not None
            else load_trusted_keys(config.trust.public_keys)
        )
        self.dir = Path(config.state.dir) / STATE_SUBDIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "state.json"
        self.pending_path = self.dir / "pending.bin"
        self.chunks_dir = self.dir / "chunks"
        self.state = FleetState.load(self.state_path)
        self.triallog = TrialLog(Path(config.state.dir))
        self.status = StatusReporter(
            device_id=config.device_id, device_class=config.device_class, topics=self.topics
        )
        self.watchdog = systemd.Watchdog()
        self._assembling: dict[str, Reassembler] = {}
        self._first_byte: dict[str, float] = {}
        self._received: dict[str, set[bytes]] = {}
        self._last_status_at = 0.0
        self._last_periodic = time.monotonic()
        self._idle_work = True
        self._last_traffic = time.monotonic()
        self._restore()

    # -- lifecycle ------------------------------------------------------------------------------
    def _restore(self) -> None:
        last = LastError(**self.state.last_error) if self.state.last_error else None
        inst = self.state.installed
        self.status.restore(
            task=inst["task"] if inst else None,
            version=inst["version"] if inst else None,
            last_error=last,
        )
        for folder in sorted(self.chunks_dir.glob("*")) if self.chunks_dir.exists() else []:
            self._reload_chunks(folder)

    def run(self) -> int:
        """Serve until ``stop`` is set; returns the process exit code."""
        self.link.start()
        systemd.notify("READY=1")
        try:
            if self.state.pending is not None:
                self._run_pending()
            while not self.stop.is_set():
                try:
                    item = self.link.inbox.get(timeout=min(0.25, self.mqtt.status_interval_s))
                except queue.Empty:
                    item = None
                    self._idle()
                if isinstance(item, Inbound):
                    self._handle(item)
                elif isinstance(item, LinkEvent) and item.connected:
                    self._on_connected()
                self._tick()
        finally:
            systemd.notify("STOPPING=1")
            self.link.stop()
        return 0

    def _idle(self) -> None:
        """Warm the feature cache a block at a time while nothing else is going on."""
        after = self.mqtt.idle_warm_after_s
        if not self._idle_work or after <= 0 or self.state.pending is not None:
            return
        if self._assembling or time.monotonic() - self._last_traffic < after:
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
        if now - self._last_periodic >= self.mqtt.status_interval_s:
            self._last_periodic = now
            self.publish_status(force=True)

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
        self.link.publish(self.topics.status(self.config.device_id), self.status.to_json())

    # -- receiving ------------------------------------------------------------------------------
    def _handle(self, inbound: Inbound) -> None:
        self._last_traffic = time.monotonic()
        parsed = self.topics.parse(inbound.topic)
        kind = parsed.kind if parsed else None
        data = inbound.payload
        payload_id: str | None = None
        if kind is TopicKind.TASK and data:
            payload_id = payload_digest(data)
        elif kind is TopicKind.CHUNK and data:
            payload_id = _chunk_owner(data)
        elif kind is TopicKind.MANIFEST and data:
            payload_id = _manifest_owner(data)
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
        if not data or kind not in (TopicKind.TASK, TopicKind.MANIFEST, TopicKind.CHUNK):
            self.link.ack(inbound)  # a cleared retained topic, or nothing of ours
            return
        if kind is TopicKind.TASK:
            self._offer(data, first_byte_at=inbound.received_at)
        else:
            self._receive_piece(data, inbound, manifest=kind is TopicKind.MANIFEST)
        self.link.ack(inbound)
        if self.state.pending is not None:
            self._run_pending()

    def _receive_piece(self, data: bytes, inbound: Inbound, *, manifest: bool) -> None:
        owner = _manifest_owner(data) if manifest else _chunk_owner(data)
        if owner is None:
            logger.warning(
                "ignoring malformed %s on %s", "manifest" if manifest else "chunk", inbound.topic
            )
            return
        if self.state.known(owner):
            return  # a stale retained piece of a payload already handled
        folder = self.chunks_dir / owner
        name = "manifest.bin" if manifest else f"c-{hashlib.sha256(data).hexdigest()[:32]}.bin"
        _write_atomic(folder / name, data)  # durable before the ack
        self._first_byte.setdefault(owner, inbound.received_at)
        self._feed(owner, data, manifest=manifest)

    def _feed(self, owner: str, data: bytes, *, manifest: bool) -> None:
        reasm = self._assembling.get(owner)
        if reasm is None:
            self._evict_assembling()
            reasm = self._assembling[owner] = Reassembler()
        try:
            reasm.add_manifest(data) if manifest else reasm.add_chunk(data)
        except ChunkError as exc:
            logger.warning("chunk of payload %s dropped: %s", owner[:12], exc)
            return
        if not manifest:
            self._received.setdefault(owner, set()).add(hashlib.sha256(data).digest())
        if not reasm.is_complete():
            missing = len(reasm.missing())
            if missing:  # the manifest is known
                got = len(self._received.get(owner, ()))
                self.status.receiving(100.0 * got / (got + missing))
                self.publish_status()
            return
        try:
            payload = reasm.payload()
        except ChunkError as exc:
            self._reject(exc, payload_id=owner)
            self._drop_assembly(owner)
            return
        first = self._first_byte.get(owner, time.time())
        self._offer(payload, first_byte_at=first)
        self._drop_assembly(owner)

    def _evict_assembling(self) -> None:
        while len(self._assembling) >= _MAX_ASSEMBLING:
            oldest = next(iter(self._assembling))
            logger.warning("dropping partial payload %s: too many in flight", oldest[:12])
            self._drop_assembly(oldest)

    def _drop_assembly(self, owner: str) -> None:
        self._assembling.pop(owner, None)
        self._first_byte.pop(owner, None)
        self._received.pop(owner, None)
        shutil.rmtree(self.chunks_dir / owner, ignore_errors=True)

    def _reload_chunks(self, folder: Path) -> None:
        owner = folder.name
        if self.state.known(owner):
            shutil.rmtree(folder, ignore_errors=True)
            return
        for path in sorted(folder.glob("*.bin")):
            self._first_byte.setdefault(owner, path.stat().st_mtime)
            self._feed(owner, path.read_bytes(), manifest=path.name == "manifest.bin")

    # -- deciding -------------------------------------------------------------------------------
    def _offer(self, data: bytes, *, first_byte_at: float) -> None:
        """Check a complete payload; record it as pending (durably) or rejected."""
        payload_id = payload_digest(data)
        if self.state.known(payload_id):
            logger.info("payload %s already handled; nothing to do", payload_id[:12])
            return
        task: str | None = None
        version: int | None = None
        try:
            if len(data) > self.mqtt.max_payload_bytes:
                raise TaskRejectedError(
                    f"payload: {len(data)} bytes over mqtt.max_payload_bytes "
                    f"({self.mqtt.max_payload_bytes})"
                )
            payload = decode_payload(
                data, trusted_keys=self.keys, allow_unsigned=self.config.trust.allow_unsigned
            )
            task, version = payload.task, payload.version
            previous = self.state.versions.get(task)
            if previous is not None and version < previous["version"]:
                raise TaskRejectedError(
                    f"version: {task} v{version} is older than installed v{previous['version']}"
                )
            if previous is not None and version == previous["version"]:
                raise TaskRejectedError(
                    f"version: {task} v{version} was already applied with different content"
                )
        except (PayloadError, TaskRejectedError) as exc:
            self._reject(exc, payload_id=payload_id, task=task, version=version)
            return
        _write_atomic(self.pending_path, data)
        self.state.pending = {
            "payload_id": payload_id,
            "task": task,
            "version": version,
            "first_byte_at": first_byte_at,
            "attempts": 0,
        }
        self.state.save(self.state_path)
        self.triallog.record_task(
            payload_id=payload_id,
            outcome="received",
            task=task,
            version=version,
            first_byte_at=first_byte_at,
        )
        logger.info("task %s v%s accepted (payload %s)", task, version, payload_id[:12])

    def _reject(
        self,
        exc: Exception,
        *,
        payload_id: str,
        task: str | None = None,
        version: int | None = None,
        remember: bool = True,
    ) -> None:
        """Report a refused payload. ``remember``: never try it again (the payload's own fault);
        False for device-side failures (corpus or encoder missing...), retried on redelivery."""
        error = LastError(
            code=type(exc).__name__,
            message=str(exc),
            at=time.time(),
            task=task,
            version=version,
            payload_id=payload_id,
        )
        logger.warning("payload %s rejected: %s: %s", payload_id[:12], error.code, error.message)
        if remember:
            self.state.rejected = [*self.state.rejected, payload_id][-_MAX_REJECTED_REMEMBERED:]
        self.state.last_error = asdict(error)
        if self.state.pending and self.state.pending["payload_id"] == payload_id:
            self.state.pending = None
        self.state.save(self.state_path)
        self.triallog.record_task(
            payload_id=payload_id,
            outcome="rejected" if remember else "failed",
            task=task,
            version=version,
            error=f"{error.code}: {error.message}",
        )
        self.status.rejected(error)
        self.publish_status(force=True)

    # -- training -------------------------------------------------------------------------------
    def _run_pending(self) -> None:
        pending = self.state.pending
        if pending is None:
            return
        payload_id: str = pending["payload_id"]
        task: str = pending["task"]
        version: int = pending["version"]
        if self.applier.installed_digest() == payload_id:
            logger.info("task %s v%s was stored before a restart; not retraining", task, version)
            self._finish(pending, applied=None)
            return
        if pending["attempts"] >= MAX_ATTEMPTS:
            self._reject(
                TaskRejectedError(f"training failed {MAX_ATTEMPTS} times; giving up"),
                payload_id=payload_id,
                task=task,
                version=version,
            )
            return
        pending["attempts"] += 1
        self.state.save(self.state_path)
        data = self.pending_path.read_bytes()

        def progress(fraction: float, stage: str) -> None:
            self.watchdog.tick()
            self.status.training(task=task, version=version, progress=100 * fraction, detail=stage)
            self.publish_status()

        progress(0.0, "starting")
        try:
            applied = self.applier.apply(data, progress=progress)
        except (PayloadError, TaskRejectedError) as exc:
            self._reject(exc, payload_id=payload_id, task=task, version=version)
            return
        except AgentError as exc:  # the device's problem, not the payload's: retry on redelivery
            self._reject(exc, payload_id=payload_id, task=task, version=version, remember=False)
            return
        self._finish(pending, applied=applied)

    def _finish(self, pending: dict[str, Any], *, applied: Applied | None) -> None:
        payload_id, task, version = pending["payload_id"], pending["task"], pending["version"]
        ready_at = time.time()
        self.state.versions[task] = {"version": version, "payload_id": payload_id}
        self.state.installed = {"task": task, "version": version, "payload_id": payload_id}
        self.state.pending = None
        self.state.save(self.state_path)
        self.pending_path.unlink(missing_ok=True)
        self.triallog.record_task(
            payload_id=payload_id,
            outcome="ready",
            ready_at=ready_at,
            train_seconds=applied.train_seconds if applied else None,
        )
        self.status.ready(task=task, version=version)
        self.publish_status(force=True)
        self._publish_result(pending, applied=applied, ready_at=ready_at)
        logger.info("task %s v%s ready", task, version)

    def _publish_result(
        self, pending: dict[str, Any], *, applied: Applied | None, ready_at: float
    ) -> None:
        summary = self.triallog.task_summary(pending["payload_id"])
        probe = self.applier.evaluate_probe()
        first = pending.get("first_byte_at")
        result = TaskResult(
            device_id=self.config.device_id,
            device_class=self.config.device_class,
            task=pending["task"],
            version=pending["version"],
            payload_id=pending["payload_id"],
            num_indices=applied.num_indices if applied else -1,
            bytes_received=summary.payload_bytes if summary else 0,
            messages=summary.messages if summary else 0,
            time_to_model_s=round(ready_at - first, 3) if first else None,
            train_seconds=round(applied.train_seconds, 3) if applied else 0.0,
            train_accuracy=applied.train_accuracy if applied else None,
            probe_accuracy=probe[0] if probe else None,
            probe_size=probe[1] if probe else None,
            finished_at=ready_at,
            extra={"resumed_after_restart": applied is None},
        )
        body = result.to_json()
        _write_atomic(self.dir / "results" / f"{pending['task']}.json", body)
        self.link.publish(self.topics.result(self.config.device_id, pending["task"]), body)

    @property
    def agent_state(self) -> AgentState:
        return self.status.state


def _chunk_owner(data: bytes) -> str | None:
    probe = Reassembler()
    try:
        probe.add_chunk(data)
    except ChunkError:
        return None
    return probe.payload_sha256


def _manifest_owner(data: bytes) -> str | None:
    probe = Reassembler()
    try:
        probe.add_manifest(data)
    except ChunkError:
        return None
    return probe.payload_sha256


_PROBE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
_PROBE_MAX_IMAGES = 5000


class PipelineApplier:
    """The real applier: agent.pipeline (verify, corpus check, features, train, store)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._cache: Any = None

    def apply(self, data: bytes, *, progress: ProgressFn) -> Applied:
        from agent.pipeline import apply_payload

        return apply_payload(data, config=self.config, progress=progress)

    def warm_step(self, should_stop: Callable[[], bool]) -> bool:
        from agent.pipeline import open_corpus, open_feature_cache

        if self._cache is None:
            self._cache = open_feature_cache(self.config, open_corpus(self.config))
        if self._cache.is_complete():
            self._cache = None  # release the encoder session
            return False
        report = self._cache.warm(should_stop=should_stop)
        if report.blocks_computed:
            logger.info(
                "idle: embedded %d corpus images into the feature cache", report.images_embedded
            )
        return True

    def installed_digest(self) -> str | None:
        from agent.models import ModelStore

        current = ModelStore(self.config.state.dir).current()
        return current.payload_digest if current is not None else None

    def evaluate_probe(self) -> tuple[float, int] | None:
        """Top-1 accuracy on ``mqtt.probe_dir`` (ImageFolder) over the model's classes."""
        root = self.config.mqtt.probe_dir
        if root is None:
            return None
        from PIL import Image

        from agent.predict import Predictor

        predictor = Predictor.from_config(self.config)
        names = {name: i for i, name in enumerate(predictor.class_names)}
        files: list[tuple[Path, int]] = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name in names):
            files += [
                (f, names[folder.name])
                for f in sorted(folder.iterdir())
                if f.suffix.lower() in _PROBE_SUFFIXES
            ]
        files = files[:_PROBE_MAX_IMAGES]
        if not files:
            logger.warning("probe folder %s has no images of the task's classes", root)
            return None
        correct = 0
        for start in range(0, len(files), 256):
            batch = files[start : start + 256]
            images = []
            for path, _ in batch:
                with Image.open(path) as img:
                    img.load()
                    images.append(img.copy())
            probs = predictor.predict_proba(images)  # (B, C)
            predicted = probs.argmax(axis=1)
            correct += int(sum(int(p) == y for p, (_, y) in zip(predicted, batch, strict=True)))
        return correct / len(files), len(files)
