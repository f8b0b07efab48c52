"""Watch the fleet live: one broker session that keeps the latest message of every topic.

`BrokerSession` keeps retained messages (what `collect_retained` gathers); a rollout also needs
what devices publish while it waits (a result, a status after a rollback), which a broker sends
to a subscriber without the retain flag. This session keeps both, with when each arrived.
"""

from __future__ import annotations

import time
from typing import Any

import paho.mqtt.client as mqtt

from builder.fleet.session import BrokerOptions, BrokerSession


class FleetWatch(BrokerSession):
    def __init__(self, options: BrokerOptions) -> None:
        super().__init__(options)
        self.latest: dict[str, bytes] = {}
        self.arrived_at: dict[str, float] = {}  # unix seconds the latest message of each topic came

    def __enter__(self) -> FleetWatch:
        super().__enter__()
        return self

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:  # a re-entrant lock: the base class takes it again
            self.latest[msg.topic] = bytes(msg.payload)
            self.arrived_at[msg.topic] = time.time()
            super()._on_message(client, userdata, msg)

    def follow(self, *filters: str, quiet_s: float = 0.3) -> None:
        """Subscribe to each filter and wait for its retained messages."""
        for topic_filter in filters:
            self.collect_retained(topic_filter, quiet_s=quiet_s)

    def messages(self) -> dict[str, bytes]:
        """The latest message of every topic seen (an empty one: the topic was cleared)."""
        with self._cond:
            return dict(self.latest)

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early when a message arrives."""
        with self._cond:
            self._cond.wait(max(0.0, seconds))
