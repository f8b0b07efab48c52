"""Publish a signed task payload once, retained, for a whole fleet group.

With ``check=True`` (what `plada-build publish` does) nothing is sent unless the payload decodes,
is signed (and verifies under ``trusted_keys`` when given), has not expired, and is not older than
the task already retained for the group (``force`` overrides only the last): a retained message
is what every device joining later receives, so a bad one would replace the real task for them.

A payload no larger than ``max_chunk_bytes`` goes out as one retained QoS 1 message on
``<base>/group/<group>/task``. A larger one is split (plada.chunks): the manifest on
``.../task/manifest`` and chunk ``i`` on ``.../task/chunk/<i>``, all retained. Retained leftovers
of an earlier publish under the group's task topics (a whole payload, a manifest, surplus chunks)
are cleared with zero-length retained messages, so a device joining later sees exactly one task.
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from builder.errors import PublishError
from builder.publish_check import check_not_older, check_publishable, retained_task
from plada.chunks import DEFAULT_MAX_CHUNK_BYTES, split_payload
from plada.topics import TASK_QOS, TopicScheme, parse_broker_url

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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


@dataclass(frozen=True)
class PublishReport:
    group: str
    payload_bytes: int
    chunked: bool
    messages: int
    bytes_sent: int
    topics: list[str]
    cleared: list[str]
    seconds: float


def publish_payload(
    data: bytes,
    *,
    options: BrokerOptions,
    group: str,
    base_topic: str = "plada",
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    check: bool = False,
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    force: bool = False,
) -> PublishReport:
    """Publish ``data`` retained for ``group``; returns what was sent once all of it was acked.

    ``check``: refuse a payload no device would accept, or an older version than the retained
    task unless ``force`` (see the module docstring). Tests that publish bad payloads on purpose
    leave it off.
    """
    if not data:
        raise PublishError("payload is empty")
    info = check_publishable(data, trusted_keys=trusted_keys) if check else None
    topics = TopicScheme(base_topic)
    start = time.monotonic()
    if len(data) <= max_chunk_bytes:
        messages = [(topics.task(group), data)]
    else:
        chunked = split_payload(data, max_chunk_bytes=max_chunk_bytes)
        messages = [(topics.task_manifest(group), chunked.manifest)]
        messages += [(topics.task_chunk(group, i), c) for i, c in enumerate(chunked.chunks)]
    with BrokerSession(options) as session:
        old = session.collect_retained(topics.task_filter(group), quiet_s=0.3)
        if info is not None:
            check_not_older(info, retained_task(old, topics), force=force)
        new_topics = {t for t, _ in messages}
        stale = sorted(t for t, body in old.items() if body and t not in new_topics)
        # Clear stale retained topics first, so no device sees a mix of old and new.
        mids = [session.publish(t, b"") for t in stale]
        mids += [session.publish(t, body) for t, body in messages]
        session.wait_acked(mids)
    report = PublishReport(
        group=group,
        payload_bytes=len(data),
        chunked=len(messages) > 1,
        messages=len(messages),
        bytes_sent=sum(len(b) for _, b in messages),
        topics=[t for t, _ in messages],
        cleared=stale,
        seconds=round(time.monotonic() - start, 3),
    )
    logger.info("published %d bytes to group %s in %d message(s)", len(data), group, len(messages))
    return report
