"""Every device's status and availability messages, with the time they arrived.

One paho client (the builder's account, which may read the whole fleet) that reconnects by itself
and subscribes again on every connect, so a broker restart loses nothing retained.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from plada.topics import TopicKind, TopicScheme, parse_broker_url


@dataclass(frozen=True)
class Seen:
    at: float
    device_id: str
    kind: str  # status | availability
    body: dict[str, Any] | str
    retained: bool  # a retained copy re-delivered on (re)subscribe, not a fresh publication


class Observer:
    def __init__(self, url: str, *, username: str | None, password: str | None) -> None:
        self.topics = TopicScheme()
        self.seen: list[Seen] = []
        self._cond = threading.Condition()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"soak-observer-{time.time_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=2)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._url = parse_broker_url(url)

    def start(self) -> None:
        self._client.connect_async(self._url.host, self._url.port, keepalive=10)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(self.topics.all_status_filter(), qos=1)
            client.subscribe(self.topics.all_availability_filter(), qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = self.topics.parse(msg.topic)
        if parsed is None or parsed.device_id is None or not msg.payload:
            return
        body: dict[str, Any] | str
        if parsed.kind is TopicKind.STATUS:
            try:
                body = json.loads(msg.payload)
            except ValueError:
                return
            kind = "status"
        elif parsed.kind is TopicKind.AVAILABILITY:
            body, kind = msg.payload.decode("utf-8", "replace"), "availability"
        else:
            return
        with self._cond:
            self.seen.append(Seen(time.time(), parsed.device_id, kind, body, bool(msg.retain)))
            self._cond.notify_all()

    def statuses(self, device_id: str, *, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        with self._cond:
            return [
                (s.at, s.body)
                for s in self.seen
                if s.device_id == device_id
                and s.kind == "status"
                and s.at >= since
                and isinstance(s.body, dict)
            ]

    def published_since(self, device_id: str, since: float) -> bool:
        """Whether the device itself published a status at or after `since` (a retained copy the
        observer got again on resubscribing does not count: it may predate `since`)."""
        with self._cond:
            return any(
                s.device_id == device_id and s.kind == "status" and not s.retained and s.at >= since
                for s in self.seen
            )

    def last_status(self, device_id: str) -> dict[str, Any] | None:
        found = self.statuses(device_id)
        return found[-1][1] if found else None

    def wait_for(self, predicate: Callable[[], bool], *, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True
