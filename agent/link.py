"""The MQTT link: the only agent module that imports paho.

paho's network thread runs the VERSION2 callbacks; they only enqueue (an exception inside a paho
callback is re-raised into its network loop). The agent's main loop reads :attr:`MqttLink.inbox`,
does the work, and calls :meth:`MqttLink.ack` once a task message is durably recorded
(``manual_ack=True``). Reconnects are paho's (``connect_async`` + ``loop_start`` +
``reconnect_delay_set``) over a persistent session (stable client id, ``clean_start=False`` /
``clean_session=False``), so QoS 1 task messages queued while the device was offline still arrive.

What is subscribed, and when, is agent.subscriptions' call: standing filters only when the
session lacks them, chunk topics one by one as the main loop says which it is missing
(:meth:`MqttLink.want_chunks`), so a reconnect is never sent what the device already holds.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.mqtt_config import MqttConfig
from agent.subscriptions import Plan, SubscriptionBook

logger = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


@dataclass(frozen=True)
class Inbound:
    """One received PUBLISH, handed from paho's thread to the main loop."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool
    received_at: float


@dataclass(frozen=True)
class LinkEvent:
    """Connection state change (connected / disconnected), also delivered through the inbox."""

    connected: bool
    reason: str
    session_present: bool = False
    connection: int = 0  # counts CONNACKs: a resync names the connection it was made for
    at: float = field(default_factory=time.time)  # when paho saw it, not when the loop got to it


class MqttLink:
    """One device's connection: subscribe to its group's task topics, publish its own topics."""

    def __init__(self, config: MqttConfig, *, device_id: str, record: Path | None = None) -> None:
        """`record`: where the session's subscriptions are remembered across restarts (the
        daemon's ``<state>/fleet/subscriptions.json``); None keeps them in memory only."""
        self.config = config
        self.device_id = device_id
        self.topics = config.topics
        self.inbox: queue.Queue[Inbound | LinkEvent] = queue.Queue()
        self.connected = threading.Event()
        self._mqtt5 = config.protocol == "5"
        session = f"{config.effective_client_id(device_id)}@{config.url}"
        # paho's thread (CONNACK, SUBACK, UNSUBACK) and the main loop (want_chunks) share the book
        self._lock = threading.Lock()
        self._book = SubscriptionBook(
            record, session=session, standing=self.topics.device_filters(config.group)
        )
        self._standing_mid: int | None = None
        self._connection = 0
        self._client = self._make_client()

    # -- set-up ---------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cfg.effective_client_id(self.device_id),
            clean_session=None if self._mqtt5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if self._mqtt5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        client.enable_logger(logging.getLogger("agent.link.paho"))
        username = cfg.username
        if username is not None:
            client.username_pw_set(username, cfg.resolve_password())
        if cfg.url.tls:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.will_set(self.topics.availability(self.device_id), OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(
            min_delay=max(1, round(cfg.reconnect_min_s)),
            max_delay=max(1, round(cfg.reconnect_max_s)),
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        return client

    def start(self) -> None:
        """Connect in the background and return at once; paho reconnects with backoff."""
        url = self.config.url
        properties = None
        if self._mqtt5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.config.session_expiry_s
        self._client.connect_async(
            url.host,
            url.port,
            keepalive=self.config.keepalive_s,
            clean_start=False,
            properties=properties,
        )
        self._client.loop_start()
        logger.info("connecting to %s as %s", url, self.config.effective_client_id(self.device_id))

    def stop(self, *, timeout_s: float = 5.0) -> None:
        """Announce ``offline``, disconnect cleanly, stop the network thread."""
        if self.connected.is_set():
            info = self._client.publish(
                self.topics.availability(self.device_id), OFFLINE, qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout=timeout_s)
            except (RuntimeError, ValueError):
                logger.warning("could not publish offline before disconnecting")
        self._client.disconnect()
        self._client.loop_stop()

    def kill(self) -> None:
        """Drop the connection without a DISCONNECT (tests: the will fires, like a crash)."""
        sock = self._client.socket()
        if sock is not None:
            sock.close()
        self._client.loop_stop()

    # -- paho callbacks (network thread): enqueue only ------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            logger.warning("broker refused connection: %s", reason_code)
            self.inbox.put(LinkEvent(connected=False, reason=str(reason_code)))
            return
        with self._lock:
            self._connection += 1
            connection = self._connection
            plan = self._book.connected(
                session_present=bool(flags.session_present),
                legacy=self.topics.group_filters(self.config.group),  # the wildcard scheme's
            )
            self._send(plan, qos=1, standing=True)
        client.publish(self.topics.availability(self.device_id), ONLINE, qos=1, retain=True)
        self.connected.set()
        logger.info("connected (session present: %s)", flags.session_present)
        self.inbox.put(
            LinkEvent(
                connected=True,
                reason="connected",
                session_present=flags.session_present,
                connection=connection,
            )
        )

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()
        with self._lock:
            self._book.disconnected()
        logger.info("disconnected: %s", reason_code)
        self.inbox.put(LinkEvent(connected=False, reason=str(reason_code)))

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(
            Inbound(
                topic=msg.topic,
                payload=bytes(msg.payload),
                mid=msg.mid,
                qos=msg.qos,
                retain=bool(msg.retain),
                received_at=time.time(),
            )
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            if mid != self._standing_mid:
                return
            self._standing_mid = None
            refused = [str(code) for code in reason_codes if code.is_failure]
            if refused:  # e.g. the broker's ACL: tried again at the next connect
                logger.error("broker refused the task subscriptions: %s", ", ".join(refused))
                return
            self._book.standing_acknowledged()

    def _on_unsubscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._lock:
            self._book.unsubscribed(mid)

    def _send(self, plan: Plan, *, qos: int, standing: bool = False) -> None:
        """Send a plan's UNSUBSCRIBE, then its SUBSCRIBE (one packet each), under the lock."""
        if plan.unsubscribe:
            rc, mid = self._client.unsubscribe(plan.unsubscribe)
            if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                self._book.unsubscribing(mid, plan.unsubscribe)
            logger.debug("unsubscribe %s: %s", plan.unsubscribe, mqtt.error_string(rc))
        if not plan.subscribe:
            return
        if self._mqtt5:
            options = SubscribeOptions(qos=qos, retainHandling=plan.retain_handling)
            rc, mid = self._client.subscribe([(t, options) for t in plan.subscribe])
        else:
            rc, mid = self._client.subscribe([(t, qos) for t in plan.subscribe])
        if standing and rc == mqtt.MQTT_ERR_SUCCESS:
            self._standing_mid = mid
        logger.debug("subscribe %s (QoS %d): %s", plan.subscribe, qos, mqtt.error_string(rc))

    # -- main-thread API ------------------------------------------------------------------------
    def want_chunks(self, topics: Iterable[str], *, resync: int | None = None) -> None:
        """The chunk topics the device is missing right now (the main loop calls this after every
        piece it stores, and with `resync` = the connection of a connect event once it has
        handled it): newly missing ones are subscribed, held ones unsubscribed, and at the resync
        of the current connection every missing one again (a resync of an older connection is
        not: that connection's own event follows in the inbox)."""
        with self._lock:
            plan = self._book.want(
                topics,
                resync=resync == self._connection,
                connected=self.connected.is_set(),
            )
            self._send(plan, qos=0)

    def ack(self, inbound: Inbound) -> None:
        """Acknowledge a QoS 1 message (after its effect is durably recorded). While disconnected
        there is no one to ack to: the broker sends it again in the resumed session."""
        if inbound.qos > 0 and self.connected.is_set():
            self._client.ack(inbound.mid, inbound.qos)

    def publish(self, topic: str, payload: bytes, *, retain: bool = True, qos: int = 1) -> None:
        """Queue a publish (thread-safe; paho resends QoS 1 after a reconnect). While
        disconnected nothing is queued: status and results are published again on connect."""
        if not self.connected.is_set():
            logger.debug("not connected: %s not published now", topic)
            return
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            logger.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    @property
    def mqtt5(self) -> bool:
        return self._mqtt5
