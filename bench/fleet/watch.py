"""The builder's view of a fleet rollout: when each device's result message for a version
arrives, on one subscription to every device's result topic of the task (what `plada-build
fleet results` reads)."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from plada.topics import TopicScheme, parse_broker_url


class ResultWatch:
    def __init__(self, url: str, *, username: str | None, password: str | None, task: str) -> None:
        self.topics = TopicScheme()
        self._task = task
        self._cond = threading.Condition()
        self._seen: dict[tuple[str, int], float] = {}  # (device, version) -> first arrival
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"bench-fleet-watch-{time.time_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._url = parse_broker_url(url)

    def start(self) -> None:
        self._client.connect_async(self._url.host, self._url.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            client.subscribe(self.topics.all_results_filter(self._task), qos=1)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            body = json.loads(msg.payload)
            key = (str(body["device_id"]), int(body["version"]))
        except (ValueError, KeyError, TypeError):
            return  # an empty (cleared) or foreign result
        with self._cond:
            self._seen.setdefault(key, time.time())
            self._cond.notify_all()

    def arrivals(self, version: int) -> dict[str, float]:
        """device id -> when its result for `version` first arrived (wall clock)."""
        with self._cond:
            return {d: at for (d, v), at in self._seen.items() if v == version}

    def wait(self, version: int, count: int, *, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while sum(1 for (_, v) in self._seen if v == version) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True
