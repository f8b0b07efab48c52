"""A real MQTT client (paho) to run inside a trial namespace; prints one JSON line of what it did.

    python -m tools.trial.mqtt_client publish --url mqtt://10.201.0.1:1883 --topic t/x \\
        --size 20000 --count 5
    python -m tools.trial.mqtt_client subscribe --url ... --topic t/# --count 5 --timeout 60

``publish`` sends ``count`` messages of ``size`` random (incompressible) bytes, or of a file's
bytes (``--file``), at QoS 1 and waits for every PUBACK. ``subscribe`` prints
``{"subscribed": true}`` once the broker granted the subscription, then the summary when
``count`` messages arrived (or at the timeout). Both report
``mqtt_bytes_sent`` / ``mqtt_bytes_received``: the exact MQTT 3.1.1 packet sizes of what crossed
the connection (computed from the packets, so it is what TCP carried once, without retransmits).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from plada.topics import parse_broker_url


def _remaining_length_bytes(n: int) -> int:
    size = 1
    while n >= 128:
        n //= 128
        size += 1
    return size


def publish_size(topic: str, payload_bytes: int, *, qos: int) -> int:
    """Bytes of one MQTT 3.1.1 PUBLISH: fixed header, topic, packet id (QoS > 0), payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + payload_bytes
    return 1 + _remaining_length_bytes(remaining) + remaining


def connect_size(client_id: str) -> int:
    """Bytes of an MQTT 3.1.1 CONNECT without will, username or password."""
    remaining = 10 + 2 + len(client_id.encode())
    return 1 + _remaining_length_bytes(remaining) + remaining


def subscribe_size(topic: str) -> int:
    remaining = 2 + 2 + len(topic.encode()) + 1
    return 1 + _remaining_length_bytes(remaining) + remaining


CONNACK = PUBACK = 4
DISCONNECT = 2
SUBACK = 5  # one granted QoS


class _Client:
    """paho with condition-variable waits; counts connects and received messages."""

    def __init__(self, client_id: str, *, clean: bool, keepalive: int) -> None:
        self.client_id = client_id
        self.keepalive = keepalive
        self.cond = threading.Condition()
        self.connects = 0
        self.acked: set[int] = set()
        self.subacked = False
        self.received: list[tuple[float, int, bool]] = []  # (time, payload bytes, dup)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.topic: str | None = None

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        with self.cond:
            self.connects += 1
            if self.topic is not None and not flags.session_present:
                client.subscribe(self.topic, qos=1)
            self.cond.notify_all()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self.cond:
            self.acked.add(mid)
            self.cond.notify_all()

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, rcs: Any, props: Any) -> None:
        with self.cond:
            self.subacked = True
            self.cond.notify_all()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.received.append((time.time(), len(msg.payload), bool(msg.dup)))
            self.cond.notify_all()

    def start(self, url: str) -> None:
        parsed = parse_broker_url(url)
        self.client.connect_async(parsed.host, parsed.port, keepalive=self.keepalive)
        self.client.loop_start()

    def wait(self, predicate: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def run_publish(args: argparse.Namespace) -> dict[str, Any]:
    client = _Client(args.client_id, clean=True, keepalive=args.keepalive)
    started = time.time()
    client.start(args.url)
    if not client.wait(lambda: client.connects > 0, args.timeout):
        raise SystemExit(f"no CONNACK from {args.url} within {args.timeout:g} s")
    connected = time.time()
    mids = []
    if args.file:
        with open(args.file, "rb") as fh:
            blob = fh.read()
        args.size = len(blob)
    for _ in range(args.count):
        body = blob if args.file else os.urandom(args.size)
        info = client.client.publish(args.topic, body, qos=1, retain=args.retain)
        mids.append(info.mid)
    done = client.wait(lambda: all(m in client.acked for m in mids), args.timeout)
    finished = time.time()
    client.stop()
    sent = connect_size(args.client_id) + DISCONNECT
    sent += args.count * publish_size(args.topic, args.size, qos=1)
    return {
        "ok": done,
        "messages": args.count,
        "payload_bytes": args.count * args.size,
        "connected_at": connected,
        "connect_s": round(connected - started, 4),
        "seconds": round(finished - connected, 4),
        "mqtt_bytes_sent": sent,
        "mqtt_bytes_received": CONNACK + args.count * PUBACK,
        "connects": client.connects,
    }


def run_subscribe(args: argparse.Namespace) -> dict[str, Any]:
    client = _Client(args.client_id, clean=not args.persistent, keepalive=args.keepalive)
    client.topic = args.topic
    client.start(args.url)
    if not client.wait(lambda: client.subacked, args.timeout):
        raise SystemExit(f"no SUBACK from {args.url} within {args.timeout:g} s")
    print(json.dumps({"subscribed": True}), flush=True)
    client.wait(lambda: len(client.received) >= args.count, args.timeout)
    with client.cond:
        received = list(client.received)
        connects = client.connects
    client.stop()
    payload = sum(n for _, n, _ in received)
    return {
        "ok": len(received) >= args.count,
        "messages": len(received),
        "duplicates": sum(1 for *_, dup in received if dup),
        "payload_bytes": payload,
        "first_at": received[0][0] if received else None,
        "last_at": received[-1][0] if received else None,
        "connects": connects,
        "mqtt_bytes_sent": connects * connect_size(args.client_id)
        + subscribe_size(args.topic)
        + len(received) * PUBACK
        + DISCONNECT,
        "mqtt_bytes_received": connects * CONNACK
        + SUBACK
        + sum(publish_size(args.topic, n, qos=1) for _, n, _ in received),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.trial.mqtt_client", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("publish", "subscribe"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--url", required=True, help="mqtt://host:port")
        cmd.add_argument("--topic", required=True)
        cmd.add_argument("--count", type=int, default=1)
        cmd.add_argument("--timeout", type=float, default=60.0)
        cmd.add_argument("--keepalive", type=int, default=60)
        cmd.add_argument("--client-id", default=f"trial-{name}-{os.getpid()}")
    pub = sub.choices["publish"]
    body = pub.add_mutually_exclusive_group(required=True)
    body.add_argument("--size", type=int, help="payload bytes per message (random)")
    body.add_argument("--file", help="send this file's bytes as each message (a real blob)")
    pub.add_argument("--retain", action="store_true")
    sub.choices["subscribe"].add_argument(
        "--persistent", action="store_true", help="clean_session=False (queued while offline)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run_publish(args) if args.command == "publish" else run_subscribe(args)
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
