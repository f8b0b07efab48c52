"""The MQTT link: the only agent module that imports paho.

paho's network thread runs the VERSION2 callbacks; they only enqueue (an exception inside a paho
callback is re-raised into its network loop). The agent's main loop reads :attr:`MqttLink.inbox`,
does the work, and calls :meth:`MqttLink.ack` once a task message is durably recorded
(``manual_ack=True``). Reconnects are paho's (``connect_async`` + ``loop_start`` +
``reconnect_delay_set``) over a persistent session (stable client id, ``clean_start=False`` /
``clean_session=False``), so QoS 1 task messages queued while the device was offline still arrive.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.mqtt_config import MqttConfig

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
    at: float = field(default_factory=time.time)  # when paho saw it, not when the loop got to it


class MqttLink:
    """One device's connection: subscribe to its group's task topics, publish its own topics."""

    def __init__(self, config: MqttConfig, *, device_id: str) -> None:
        self.config = config
        self.device_id = device_id
        self.topics = config.topics
        self.inbox: queue.Queue[Inbound | LinkEvent] = queue.Queue()
        self.connected = threading.Event()
        self._mqtt5 = config.protocol == "5"
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
        for topic in self.topics.group_filters(self.config.group):  # every task, and the old scheme
            client.subscribe(topic, qos=1)
        client.publish(self.topics.availability(self.device_id), ONLINE, qos=1, retain=True)
        self.connected.set()
        logger.info("connected (session present: %s)", flags.session_present)
        self.inbox.put(
            LinkEvent(connected=True, reason="connected", session_present=flags.session_present)
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

    # -- main-thread API ------------------------------------------------------------------------
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
