"""A small paho client for tests: connect as a user, watch topics, publish, wait for messages."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from plada.topics import parse_broker_url
from tools.devbroker import ADMIN_USER, Broker


class Probe:
    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca: Path | None = None,
        protocol5: bool = True,
        client_id: str = "",
    ) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.connect_result: ReasonCode | None = None
        self.subscribe_results: list[list[ReasonCode]] = []
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if protocol5 else MQTTProtocolVersion.MQTTv311,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        parsed = parse_broker_url(url)
        if parsed.tls:
            self._client.tls_set(ca_certs=str(ca) if ca else None, cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._url = parsed

    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        with self._cond:
            self.connect_result = rc
            self._cond.notify_all()

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        with self._cond:
            self.subscribe_results.append(rcs)
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._cond.notify_all()

    def connect(self, *, timeout_s: float = 10.0) -> ReasonCode:
        self._client.connect(self._url.host, self._url.port, keepalive=30)
        self._client.loop_start()
        self.wait_for(lambda: self.connect_result is not None, timeout_s=timeout_s)
        assert self.connect_result is not None
        return self.connect_result

    def subscribe(self, topic: str, *, timeout_s: float = 10.0) -> list[ReasonCode]:
        before = len(self.subscribe_results)
        self._client.subscribe(topic, qos=1)
        self.wait_for(lambda: len(self.subscribe_results) > before, timeout_s=timeout_s)
        return self.subscribe_results[before]

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> mqtt.MQTTMessageInfo:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        return info

    def wait_for(self, predicate: Callable[[], bool], *, timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def last(self, topic: str) -> bytes | None:
        with self._cond:
            found = [p for t, p, _ in self.messages if t == topic]
        return found[-1] if found else None

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def admin_probe(broker: Broker, *topics: str) -> Probe:
    """A connected probe on the builder's account (which may read the whole fleet), subscribed."""
    probe = Probe(
        broker.url,
        username=ADMIN_USER,
        password=broker.passwords.get(ADMIN_USER),
        protocol5=broker.secure,
    )
    probe.connect()
    for topic in topics:
        probe.subscribe(topic)
    return probe
