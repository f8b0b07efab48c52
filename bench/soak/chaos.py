"""The faults the soak injects, each recorded with when it happened and when its cause was gone.

Kinds: kill_mid_receive (half of a chunked payload published, the victim SIGKILLed once it reports
`receiving`, then the rest), kill_mid_training (a new version published, the victim SIGKILLed once
it reports `training`), kill_other (SIGKILL at a random moment), broker_restart, corrupt_image
(bytes flipped inside a PNG of a device's corpus, repaired later), junk_task and junk_chunk
(garbage, forged and untrusted payloads on a group's task and chunk topics, not retained).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cbor2

from builder.errors import PublishError, PublishRefusedError
from builder.fleet.publish import publish_payload
from builder.fleet.session import BrokerSession
from plada.chunks import split_payload
from plada.signing import generate_keypair, load_private_key, load_trusted_keys
from tools.fleet_harness import admin_options
from tools.tiny.damage import Damage, corrupt_corpus_image

if TYPE_CHECKING:
    from bench.soak.fleet import Device, Fleet
    from bench.soak.observer import Observer

KINDS = (
    "kill_mid_receive",
    "kill_mid_training",
    "kill_other",
    "broker_restart",
    "corrupt_image",
    "junk_task",
    "junk_chunk",
)
KILLS = ("kill_mid_receive", "kill_mid_training", "kill_other")
_WEIGHTS = (2, 2, 1, 1, 1, 2, 2)
_CHUNK_BYTES = 1024


@dataclass
class Injection:
    kind: str
    at: float
    group: str
    device_id: str | None = None
    cleared_at: float | None = None  # the cause was gone (restarted, broker up, repaired)
    detail: dict[str, Any] = field(default_factory=dict)


class Chaos:
    def __init__(self, fleet: Fleet, observer: Observer, *, seed: int) -> None:
        self.fleet = fleet
        self.observer = observer
        self.rng = random.Random(seed)
        self.injections: list[Injection] = []
        self.versions = dict.fromkeys(fleet.groups(), 0)
        self.payloads: dict[str, bytes] = {}
        self.history: list[tuple[float, str, int]] = []  # (time, group, version) of each publish
        self.restarts: list[tuple[float, Device, Injection]] = []
        self.repairs: list[tuple[float, Damage, Injection]] = []
        self._order = list(KINDS)
        self.rng.shuffle(self._order)  # every kind once first, then at random by weight
        self._keys = load_trusted_keys([fleet.public_key])
        private, _ = generate_keypair(fleet.root / "stranger-keys")
        self._stranger = load_private_key(private)

    # -- publishing ---------------------------------------------------------------------------
    def publish(self, group: str) -> None:
        """The next version of the group's task, through the checked publish path."""
        version = self.versions[group] + 1
        data = self.fleet.payload(group, version)
        self._retry(
            lambda: publish_payload(
                data,
                options=admin_options(self.fleet.broker),
                group=group,
                max_chunk_bytes=_CHUNK_BYTES,
                check=True,
                trusted_keys=self._keys,
            )
        )
        self._published(group, version, data)

    def _published(self, group: str, version: int, data: bytes) -> None:
        self.versions[group], self.payloads[group] = version, data
        self.history.append((time.time(), group, version))

    def _retry(self, action: Any, *, timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return action()
            except PublishRefusedError:
                raise
            except PublishError:  # the broker is restarting
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)

    # -- one event ----------------------------------------------------------------------------
    def inject(self) -> Injection:
        kind = self._order.pop(0) if self._order else self.rng.choices(KINDS, _WEIGHTS)[0]
        group = self.rng.choice(self.fleet.groups())
        injection: Injection = getattr(self, f"_{kind}")(group)
        self.injections.append(injection)
        return injection

    def _victim(self, group: str) -> Device | None:
        alive = [d for d in self.fleet.in_group(group) if d.alive]
        return self.rng.choice(alive) if alive else None

    def _kill(self, device: Device, injection: Injection) -> None:
        last = self.observer.last_status(device.device_id) or {}
        injection.detail["observed_state"] = last.get("state")
        device.kill()
        self.restarts.append((time.time() + self.rng.uniform(1.0, 6.0), device, injection))

    def _kill_mid_training(self, group: str) -> Injection:
        injection = Injection("kill_mid_training", time.time(), group)
        victim = self._victim(group)
        self.publish(group)
        if victim is not None:
            injection.device_id = victim.device_id
            version, since = self.versions[group], injection.at
            self.observer.wait_for(
                lambda: any(
                    s.get("state") == "training" and s.get("incoming_version") == version
                    for _, s in self.observer.statuses(victim.device_id, since=since)
                ),
                timeout_s=20.0,
            )
            self._kill(victim, injection)
        return injection

    def _kill_mid_receive(self, group: str) -> Injection:
        injection = Injection("kill_mid_receive", time.time(), group)
        victim = self._victim(group)
        version = self.versions[group] + 1
        data = self.fleet.payload(group, version)
        parts = split_payload(data, max_chunk_bytes=_CHUNK_BYTES)
        topics = self.fleet.broker_topics()
        task = self.fleet.task_of(group)  # the task's own topics, as publish_payload uses
        messages = [(topics.task_manifest(group, task), parts.manifest)]
        messages += [(topics.task_chunk(group, i, task), c) for i, c in enumerate(parts.chunks)]
        half = 1 + len(parts.chunks) // 2

        def first_half() -> None:
            with BrokerSession(admin_options(self.fleet.broker)) as session:
                old = session.collect_retained(topics.task_filter(group, task), quiet_s=0.3)
                new = {t for t, _ in messages}
                mids = [
                    session.publish(t, b"") for t, b in sorted(old.items()) if b and t not in new
                ]
                mids += [session.publish(t, b) for t, b in messages[:half]]
                session.wait_acked(mids)

        self._retry(first_half)
        if victim is not None:
            injection.device_id = victim.device_id
            self.observer.wait_for(
                lambda: any(
                    s.get("state") == "receiving"
                    for _, s in self.observer.statuses(victim.device_id, since=injection.at)
                ),
                timeout_s=15.0,
            )
            self._kill(victim, injection)

        def second_half() -> None:
            with BrokerSession(admin_options(self.fleet.broker)) as session:
                session.wait_acked([session.publish(t, b) for t, b in messages[half:]])

        self._retry(second_half)
        self._published(group, version, data)
        return injection

    def _kill_other(self, group: str) -> Injection:
        injection = Injection("kill_other", time.time(), group)
        victim = self._victim(group)
        if victim is not None:
            injection.device_id = victim.device_id
            self._kill(victim, injection)
        return injection

    def _broker_restart(self, group: str) -> Injection:
        injection = Injection("broker_restart", time.time(), group)
        down = self.rng.uniform(1.0, 4.0)
        injection.detail["alive"] = [d.device_id for d in self.fleet.devices if d.alive]
        self.fleet.broker.restart(down_s=down)
        injection.cleared_at = time.time()
        return injection

    def _corrupt_image(self, group: str) -> Injection:
        injection = Injection("corrupt_image", time.time(), group)
        alive = [d for d in self.fleet.in_group(group) if d.alive]
        device = self.rng.choice(alive or self.fleet.in_group(group))
        if any(r[2].device_id == device.device_id for r in self.repairs):
            injection.detail["skipped"] = "already corrupt"
            return injection
        index = self.rng.randrange(self.fleet.size)
        damage = corrupt_corpus_image(device.corpus, index)
        # the features of earlier installs would serve the next one without reading any image
        device.forget_feature_rows()
        injection.device_id, injection.detail["index"] = device.device_id, index
        # Publish soon, so the device has to read the damaged image while it is damaged.
        self.publish(group)
        injection.detail["version"] = self.versions[group]
        self.repairs.append((time.time() + self.rng.uniform(15.0, 40.0), damage, injection))
        return injection

    def _junk_task(self, group: str) -> Injection:
        topic = self.fleet.broker_topics().task(group, self.fleet.task_of(group))
        good = self.payloads.get(group) or self.fleet.payload(group, 1)
        choices = {
            "random": self.rng.randbytes(self.rng.randrange(1, 600)),
            "cbor": cbor2.dumps({"format": 1, "body": b"nonsense"}),
            "truncated": good[: len(good) // 2],
            "stranger": self.fleet.payload(group, 9999, key=self._stranger),
        }
        return self._junk("junk_task", group, topic, choices)

    def _junk_chunk(self, group: str) -> Injection:
        # Junk on the chunked-delivery path. Not on a chunk topic: devices subscribe to a chunk
        # topic only while they miss that chunk, so junk there reaches nobody (the point of the
        # no-resend scheme); the manifest topic is one every device of the group listens to.
        topic = self.fleet.broker_topics().task_manifest(group, self.fleet.task_of(group))
        choices = {
            "random": self.rng.randbytes(self.rng.randrange(1, 600)),
            "cbor": cbor2.dumps({"kind": "plada-chunk", "format": 1, "index": -1}),
        }
        return self._junk("junk_chunk", group, topic, choices)

    def _junk(self, kind: str, group: str, topic: str, choices: dict[str, bytes]) -> Injection:
        name = self.rng.choice(sorted(choices))
        injection = Injection(kind, time.time(), group, detail={"junk": name, "topic": topic})
        self._retry(lambda: self._publish_raw(topic, choices[name]))
        return injection

    def _publish_raw(self, topic: str, body: bytes) -> None:
        with BrokerSession(admin_options(self.fleet.broker)) as session:
            session.wait_acked([session.publish(topic, body, retain=False)])

    # -- causes going away --------------------------------------------------------------------
    def due(self, now: float) -> None:
        """Restart killed agents and repair corpora whose time has come."""
        for restart in [r for r in self.restarts if r[0] <= now]:
            self.restarts.remove(restart)
            restart[1].start()
            restart[2].cleared_at = time.time()
        for repair in [r for r in self.repairs if r[0] <= now]:
            self.repairs.remove(repair)
            repair[1].repair()
            repair[2].cleared_at = time.time()

    def finish(self) -> None:
        """End of the chaos: every cause goes away now."""
        self.due(float("inf"))
