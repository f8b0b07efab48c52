"""One connected paho client for the builder's short MQTT sessions: publish, then read back.

The client waits for CONNACK, SUBACK and PUBACK with their reason codes, so a refusal by the
broker (a bad password, an ACL) is an error that names it, not a silent drop.
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from builder.errors import PublishError
from plada.topics import TASK_QOS, parse_broker_url

logger = logging.getLogger(__name__)

PASSWORD_ENV = "PLADA_MQTT_PASSWORD"  # noqa: S105 (a variable name, not a secret)
USERNAME_ENV = "PLADA_MQTT_USERNAME"


@dataclass(frozen=True)
class BrokerOptions:
    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never printed
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    protocol5: bool = True
    timeout_s: float = 15.0
    client_id: str = ""


def read_password(*, password_file: Path | None, env: str = PASSWORD_ENV) -> str | None:
    """Password from a file (first line) or the environment; never from the command line."""
    if password_file is not None:
        try:
            value = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise PublishError(f"--password-file {password_file}: {exc.strerror}") from exc
        if not value:
            raise PublishError(f"--password-file {password_file}: empty")
        return value
    return os.environ.get(env) or None


class BrokerSession:
    """A connected paho client with waits for CONNACK, SUBACK and PUBACK (with reason codes)."""

    def __init__(self, options: BrokerOptions) -> None:
        self.options = options
        url = parse_broker_url(options.url)
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._acked: dict[int, ReasonCode] = {}
        self._subacks: set[int] = set()
        self.retained: dict[str, bytes] = {}
        self.last_message_at = 0.0
        # A unique id: some brokers (amqtt) mix up sessions of clients with an empty id.
        client_id = options.client_id or f"plada-build-{os.getpid()}-{secrets.token_hex(4)}"
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5
            if options.protocol5
            else MQTTProtocolVersion.MQTTv311,
        )
        if options.username is not None:
            self._client.username_pw_set(options.username, options.password)
        if url.tls:
            self._client.tls_set(
                ca_certs=str(options.ca_file) if options.ca_file else None,
                certfile=str(options.cert_file) if options.cert_file else None,
                keyfile=str(options.key_file) if options.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        self._client.on_connect = self._on_connect
        self._client.on_publish = self._on_publish
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._url = url

    # paho callbacks: record and notify only
    def _on_connect(
        self, client: Any, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        with self._cond:
            self._connack = rc
            self._cond.notify_all()

    def _on_publish(
        self, client: Any, userdata: Any, mid: int, rc: ReasonCode, props: Properties | None
    ) -> None:
        with self._cond:
            self._acked[mid] = rc
            self._cond.notify_all()

    def _on_subscribe(
        self, client: Any, userdata: Any, mid: int, rcs: list[ReasonCode], props: Any
    ) -> None:
        with self._cond:
            self._subacks.add(mid)
            self._cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            if msg.retain or msg.topic not in self.retained:
                self.retained[msg.topic] = bytes(msg.payload)
            self.last_message_at = time.monotonic()
            self._cond.notify_all()

    def _wait(self, predicate: Any, what: str) -> None:
        deadline = time.monotonic() + self.options.timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishError(
                        f"timed out after {self.options.timeout_s:g} s waiting for {what}"
                    )
                self._cond.wait(left)

    def __enter__(self) -> BrokerSession:
        try:
            self._client.connect(self._url.host, self._url.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            raise PublishError(f"cannot connect to {self._url}: {exc}") from exc
        self._client.loop_start()
        try:
            self._wait(lambda: self._connack is not None, f"CONNACK from {self._url}")
        except PublishError:
            self.close()
            raise
        assert self._connack is not None  # noqa: S101 (set by the wait above)
        if self._connack.is_failure:
            self.close()
            raise PublishError(f"broker {self._url} refused the connection: {self._connack}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, *, retain: bool = True) -> int:
        info = self._client.publish(topic, payload, qos=TASK_QOS, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        return info.mid

    def wait_acked(self, mids: list[int]) -> None:
        self._wait(lambda: all(m in self._acked for m in mids), f"{len(mids)} PUBACKs")
        refused = [(m, self._acked[m]) for m in mids if self._acked[m].is_failure]
        if refused:
            raise PublishError(
                f"broker refused {len(refused)} publish(es): {refused[0][1]} "
                "(is this user allowed to publish tasks by the broker ACL?)"
            )

    def snapshot(self) -> dict[str, bytes]:
        """Latest message per topic seen so far on every subscription."""
        with self._cond:
            return dict(self.retained)

    def collect_retained(self, topic_filter: str, *, quiet_s: float = 0.4) -> dict[str, bytes]:
        """Subscribe and gather retained messages until nothing new arrives for ``quiet_s``."""
        result, mid = self._client.subscribe(topic_filter, qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise PublishError(f"subscribe to {topic_filter} failed: {mqtt.error_string(result)}")
        self._wait(lambda: mid in self._subacks, f"SUBACK for {topic_filter}")
        self.last_message_at = time.monotonic()
        deadline = time.monotonic() + self.options.timeout_s
        while time.monotonic() < deadline:
            if time.monotonic() - self.last_message_at >= quiet_s:
                break
            time.sleep(0.05)
        with self._cond:
            return dict(self.retained)
