"""A prototype of the subscription scheme proposed for the agent (issue 19 item 4), measured
beside the real daemon by tools.trial.measure_resume. Not product code: it only downloads.

    python -m tools.trial.resume_prototype --url mqtt://10.201.0.1:1883 --group lab \\
        --client-id proto-1 --state DIR [--mqtt3]

The scheme, the same under MQTT 5 and 3.1.1:

- a persistent session; ``task`` and ``task/manifest`` are subscribed (QoS 1) only when the
  broker has no session for the device (CONNACK session-present 0). A session-present reconnect
  subscribes nothing again, so the broker re-sends no retained message (under MQTT 5 the
  subscription also says retain handling 1: retained messages only for a new subscription);
- chunks are never subscribed with a wildcard: once a manifest is held, the device subscribes
  (QoS 0) to exactly the chunk topics it is missing, in one SUBSCRIBE, and unsubscribes each chunk
  topic as soon as that chunk is on disk. The broker sends the retained copy of each missing chunk;
  QoS 0 leaves no in-flight state in the session, so nothing is re-sent after a drop;
- after every (re)connect, the chunks still missing are subscribed again: that re-sends exactly
  the chunks lost with the connection.

State under ``--state``: ``manifest-<id>.bin``, ``chunks/<id>/c-<index>.bin``, ``installed`` (the
payload id once the joined payload passed its manifest hashes), ``received.jsonl`` (every message).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from plada.atomic import write_bytes_atomic
from plada.chunks import Reassembler
from plada.errors import ChunkError
from plada.payload import payload_digest
from plada.topics import TopicKind, TopicScheme, parse_broker_url

logger = logging.getLogger("resume_prototype")


class Downloader:
    def __init__(self, args: argparse.Namespace) -> None:
        self.topics = TopicScheme()
        self.group: str = args.group
        self.task: str | None = args.task  # None: the one-task topics
        self.state = Path(args.state)
        self.mqtt5 = not args.mqtt3
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.current: str | None = None  # payload id being assembled
        self.reasm = Reassembler()
        self.subscribed_chunks: set[int] = set()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=args.client_id,
            clean_session=None if self.mqtt5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if self.mqtt5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_connect = lambda c, u, flags, rc, p: self.inbox.put(
            ("connect", flags.session_present)
        )
        self.client.on_message = lambda c, u, msg: self.inbox.put(
            ("message", (msg.topic, bytes(msg.payload)))
        )
        self._restore()

    # -- durable state ---------------------------------------------------------------------------
    def installed(self) -> str | None:
        path = self.state / "installed"
        return path.read_text(encoding="utf-8").strip() if path.exists() else None

    def _restore(self) -> None:
        for manifest in sorted(self.state.glob("manifest-*.bin")):
            owner = manifest.stem.removeprefix("manifest-")
            if owner != self.installed():
                self._adopt(owner, manifest.read_bytes())
                for chunk in sorted((self.state / "chunks" / owner).glob("c-*.bin")):
                    self.reasm.add_chunk(chunk.read_bytes())

    def _adopt(self, owner: str, manifest: bytes) -> None:
        self.current, self.reasm, self.subscribed_chunks = owner, Reassembler(), set()
        self.reasm.add_manifest(manifest)

    # -- subscriptions ---------------------------------------------------------------------------
    def _subscribe(self, topics: list[str], *, qos: int, retain_handling: int) -> None:
        if not topics:
            return
        if self.mqtt5:
            opts = SubscribeOptions(qos=qos, retainHandling=retain_handling)
            self.client.subscribe([(t, opts) for t in topics])
        else:
            self.client.subscribe([(t, qos) for t in topics])

    def _request_missing(self) -> None:
        """Subscribe to every missing chunk topic (again after a reconnect: that re-sends them)."""
        if self.current is None or self.reasm.is_complete():
            return
        missing = self.reasm.missing()
        self.subscribed_chunks |= set(missing)
        topics = [self.topics.task_chunk(self.group, i, self.task) for i in missing]
        self._subscribe(topics, qos=0, retain_handling=0)

    def on_connect(self, session_present: bool) -> None:
        logger.info("connected (session present: %s)", session_present)
        if not session_present:
            topics = [
                self.topics.task(self.group, self.task),
                self.topics.task_manifest(self.group, self.task),
            ]
            self._subscribe(topics, qos=1, retain_handling=1)
        self._request_missing()

    # -- messages --------------------------------------------------------------------------------
    def on_message(self, topic: str, data: bytes) -> None:
        with (self.state / "received.jsonl").open("a", encoding="utf-8") as log:
            log.write(json.dumps({"t": time.time(), "topic": topic, "bytes": len(data)}) + "\n")
        parsed = self.topics.parse(topic)
        if not data or parsed is None:
            return
        if parsed.kind is TopicKind.TASK:
            self._install(payload_digest(data))
        elif parsed.kind is TopicKind.MANIFEST:
            self._take_manifest(data)
        elif parsed.kind is TopicKind.CHUNK and parsed.chunk_index is not None:
            self._store_chunk(parsed.chunk_index, data)

    def _take_manifest(self, data: bytes) -> None:
        probe = Reassembler()
        try:
            probe.add_manifest(data)
        except ChunkError as exc:
            logger.warning("manifest dropped: %s", exc)
            return
        owner = probe.payload_sha256
        if owner is None or owner in (self.installed(), self.current):
            return
        write_bytes_atomic(self.state / f"manifest-{owner}.bin", data)
        self._adopt(owner, data)
        self._request_missing()

    def _store_chunk(self, index: int, data: bytes) -> None:
        if self.current is None:
            return
        try:
            self.reasm.add_chunk(data)
        except ChunkError as exc:
            logger.warning("chunk %d dropped: %s", index, exc)
            return
        folder = self.state / "chunks" / self.current
        folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(folder / f"c-{index}.bin", data)
        if index in self.subscribed_chunks:
            self.subscribed_chunks.discard(index)
            self.client.unsubscribe(self.topics.task_chunk(self.group, index, self.task))
        if self.reasm.is_complete():
            self._install(payload_digest(self.reasm.payload()))

    def _install(self, payload_id: str) -> None:
        write_bytes_atomic(self.state / "installed", payload_id.encode())
        logger.info("payload %s complete", payload_id[:12])
        self.current = None

    def run(self, url: str, keepalive: int, stop: threading.Event) -> None:
        parsed = parse_broker_url(url)
        props = None
        if self.mqtt5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 7 * 24 * 3600
        self.client.connect_async(
            parsed.host, parsed.port, keepalive=keepalive, clean_start=False, properties=props
        )
        self.client.loop_start()
        while not stop.is_set():
            try:
                kind, value = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "connect":
                self.on_connect(value)
            else:
                self.on_message(*value)
        self.client.disconnect()
        self.client.loop_stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--task", help="the task's own topics (default: the one-task topics)")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--keepalive", type=int, default=5)
    parser.add_argument("--mqtt3", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    Path(args.state).mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    Downloader(args).run(args.url, args.keepalive, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
