"""Helpers for fleet tests: signed payloads, agent configs, a fake link and a fake applier.

The daemon verifies and decodes every payload for real (plada.payload); the fake applier checks
the corpus fingerprint and stores a real (tiny, untrained) head in the real model store, so the
version policy and the record of what is installed are the product's own, but it "trains"
instantly, so tests of the daemon's delivery logic stay fast.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.app import AgentApp, DaemonApplier, ProgressFn, subscription_record
from agent.config import AgentConfig, parse_config
from agent.link import Inbound, LinkEvent, MqttLink
from agent.models import ModelMeta, ModelStore
from agent.pipeline import VerifiedPayload
from agent.ports import ProbeResult
from builder.fleet.session import BrokerOptions
from plada.head import HeadWeights
from plada.payload import CorpusRef, Provenance, TaskPayload, check_corpus, encode_payload
from plada.signing import SigningKey, generate_keypair, load_private_key
from tools.devbroker import ADMIN_USER, Broker

FINGERPRINT = "cd" * 32
CORPUS_SIZE = 300


@dataclass(frozen=True)
class Keys:
    private: SigningKey
    public_path: Path


def make_keys(folder: Path) -> Keys:
    private_path, public_path = generate_keypair(folder)
    return Keys(private=load_private_key(private_path), public_path=public_path)


def make_payload_bytes(
    keys: Keys | None,
    *,
    task: str = "shapes",
    version: int = 1,
    k: int = 40,
    num_classes: int = 4,
    fingerprint: str = FINGERPRINT,
    size: int = CORPUS_SIZE,
    expires_at: int | None = None,
    seed: int = 0,
) -> bytes:
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(size, size=k, replace=False)).astype(np.int64)
    labels = (np.arange(k) % num_classes).astype(np.int64)
    payload = TaskPayload(
        task=task,
        version=version,
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        corpus=CorpusRef(fingerprint=fingerprint, size=size),
        indices=indices,
        labels=labels,
        provenance=Provenance(
            builder_version="test",
            strategy="random",
            params={"seed": seed},
            accuracy_estimate=None,
            created_at=int(time.time()),
            expires_at=expires_at,
        ),
    )
    return encode_payload(payload, signing_key=keys.private if keys else None)


def make_config(
    tmp: Path,
    *,
    device_id: str = "dev-1",
    public_key: Path | None = None,
    mqtt: dict[str, Any] | None = None,
    corpus: Path | None = None,
    encoder: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> AgentConfig:
    data: dict[str, Any] = {
        "device_id": device_id,
        "device_class": "x86-dev",
        "corpus": {"path": str(corpus or tmp / "corpus")},
        "encoder": {"file": str(encoder or tmp / "enc.onnx")},
        "state": {"dir": str(tmp / device_id / "state")},
        "cache": {"dir": str(tmp / device_id / "cache")},
        "trust": {"public_keys": [str(public_key)] if public_key else [], "allow_unsigned": False},
        "mqtt": {"group": "lab", **(mqtt or {})},
    }
    for key, value in (extra or {}).items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return parse_config(data)


class FakeLink:
    """Stands in for MqttLink: tests put Inbound messages; published messages are recorded."""

    mqtt5 = True

    def __init__(self) -> None:
        self.inbox: queue.Queue[Inbound | LinkEvent] = queue.Queue()
        self.published: list[tuple[str, bytes]] = []
        self.acked: list[int] = []
        self.wanted_chunks: set[str] = set()  # what the app last said it is missing
        self.resyncs = 0
        self._mid = 0
        self.started = False

    def start(self) -> None:
        self.started = True
        self.inbox.put(LinkEvent(connected=True, reason="fake"))

    def stop(self) -> None:
        self.started = False

    def ack(self, inbound: Inbound) -> None:
        self.acked.append(inbound.mid)

    def want_chunks(self, topics: Iterable[str], *, resync: int | None = None) -> None:
        self.wanted_chunks = set(topics)
        self.resyncs += resync is not None

    def publish(self, topic: str, payload: bytes, *, retain: bool = True, qos: int = 1) -> None:
        self.published.append((topic, payload))

    def deliver(self, topic: str, payload: bytes) -> int:
        self._mid += 1
        self.inbox.put(
            Inbound(
                topic=topic,
                payload=payload,
                mid=self._mid,
                qos=1,
                retain=True,
                received_at=time.time(),
            )
        )
        return self._mid

    def last(self, topic: str) -> bytes | None:
        found = [p for t, p in self.published if t == topic]
        return found[-1] if found else None


@dataclass
class FakeApplied:
    task: str
    version: int
    num_indices: int
    train_seconds: float = 0.01
    train_accuracy: float = 1.0


@dataclass
class FakeApplier:
    """Corpus check and the real model store, instant 'training' (an untrained head)."""

    public_keys: list[Path]  # what the daemon under test trusts (it verifies; this does not)
    fingerprint: str = FINGERPRINT
    size: int = CORPUS_SIZE
    applied: list[str] = field(default_factory=list)
    before_train: Callable[[], None] | None = None
    probe: tuple[float, int] | None = None
    warm_calls: int = 0

    def apply(
        self, verified: VerifiedPayload, *, store: ModelStore, progress: ProgressFn
    ) -> FakeApplied:
        payload = verified.payload
        check_corpus(payload, fingerprint=self.fingerprint, size=self.size)
        progress(0.5, "training")
        if self.before_train is not None:
            self.before_train()
        store_fake_head(store, payload, verified.digest)
        self.applied.append(verified.digest)
        return FakeApplied(payload.task, payload.version, len(payload.indices))

    def evaluate_probe(self, task: str) -> ProbeResult | None:
        return None if self.probe is None else ProbeResult(self.probe[0], self.probe[1], 0)

    def watch_paths(self) -> list[Path]:
        return []

    def warm_step(self, should_stop: Callable[[], bool]) -> bool:
        self.warm_calls += 1
        return self.warm_calls < 3  # pretend three blocks of idle work


def store_fake_head(store: ModelStore, payload: TaskPayload, digest: str) -> None:
    """Save an untrained 2-feature head for `payload` (the version policy applies)."""
    c = len(payload.class_names)
    weights = HeadWeights(
        weight=np.zeros((2, c), np.float32),
        bias=np.zeros(c, np.float32),
        mean=np.zeros(2, np.float32),
        scale=np.ones(2, np.float32),
    )
    meta = ModelMeta(
        task=payload.task,
        version=payload.version,
        class_names=payload.class_names,
        payload_digest=digest,
        created_at=time.time(),
        train_seconds=0.0,
        train_accuracy=1.0,
        backend="fake",
        hyper_params={},
        encoder_id="fake",
        encoder_sha256="00" * 32,
        feature_dim=2,
        num_examples=len(payload.indices),
        final_loss=0.0,
    )
    store.save(weights, meta)


class AppThread(threading.Thread):
    """Runs app.run(); `failure` keeps what escaped it (a daemon must never let anything out)."""

    def __init__(self, app: Any) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            self.app.run()
        except BaseException as exc:
            self.failure = exc


def run_app_until(app: Any, predicate: Callable[[], bool], *, timeout_s: float = 20.0) -> AppThread:
    """Run app.run() in a thread until predicate() holds (or the thread ends), then stop it."""
    thread = AppThread(app)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and thread.is_alive() and not predicate():
        time.sleep(0.02)
    app.stop.set()
    thread.join(timeout=10)
    return thread


# -- real-broker helpers ------------------------------------------------------------------
def admin_options(broker: Broker, *, tls: bool = False) -> BrokerOptions:
    secure = broker.secure
    return BrokerOptions(
        url=broker.tls_url if tls else broker.url,
        username=ADMIN_USER if secure else None,
        password=broker.passwords[ADMIN_USER] if secure else None,
        ca_file=broker.tls.ca if tls and broker.tls else None,
        protocol5=secure,
        timeout_s=10,
    )


def mqtt_section(
    broker: Broker, device_id: str, *, tls: bool = False, **extra: Any
) -> dict[str, Any]:
    """The [mqtt] table for a device already registered with broker.add_user(s)."""
    section: dict[str, Any] = {
        "broker": broker.tls_url if tls else broker.url,
        "group": "lab",
        "reconnect_min_s": 1,
        "reconnect_max_s": 2,
        "status_interval_s": 30,
        "protocol": "5" if broker.secure else "3.1.1",
    }
    if broker.secure:
        section |= {"username": device_id, "password_file": str(broker.password_file(device_id))}
    if tls and broker.tls:
        section["ca_file"] = str(broker.tls.ca)
    return section | extra


def device_config(
    base: AgentConfig, broker: Broker, device_id: str, root: Path, **mqtt: Any
) -> AgentConfig:
    """A copy of `base` (a tiny device's config) with its own id, state folder and broker."""
    data = base.model_dump(mode="json")
    data["device_id"] = device_id
    data["state"] = {"dir": str(root / device_id / "state")}
    data["mqtt"] = mqtt_section(broker, device_id, **mqtt)
    return parse_config(data)


@dataclass
class RunningAgent:
    app: AgentApp
    thread: threading.Thread

    def stop(self) -> None:
        self.app.stop.set()
        self.thread.join(timeout=15)


def start_agent(config: AgentConfig, applier: DaemonApplier) -> RunningAgent:
    link = MqttLink(config.mqtt, device_id=config.device_id, record=subscription_record(config))
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    thread = threading.Thread(target=app.run, name=f"agent-{config.device_id}", daemon=True)
    thread.start()
    return RunningAgent(app, thread)


def wait_until(predicate: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what or predicate}")
