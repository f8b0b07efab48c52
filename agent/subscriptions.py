"""What the device has subscribed in its broker session, so a reconnect is not sent what it holds.

A broker sends every matching retained message again whenever a subscription is made, also one
the session already holds (MQTT 3.1.1 3.8.4; MQTT 5 retain handling 0). So the link never
re-subscribes without cause, and never subscribes chunks with a wildcard (issue 19, item 4):

- **standing filters** (`TopicScheme.device_filters`: payloads, manifests, retirements,
  revocations; QoS 1) are subscribed when the broker has no session for the device (CONNACK
  session present 0), or when this book has no acknowledged record of them in the session it has
  (a first start after an upgrade from the wildcard scheme, a changed group, a SUBACK lost with
  the connection, a wiped state folder). The old wildcard filters and any other recorded filter
  are unsubscribed then;
- **chunk topics**: exactly the chunks still missing, subscribed QoS 0 once the main loop knows
  them (`want`); each is unsubscribed once its chunk is on disk. QoS 0 leaves nothing in flight in
  the session, so a drop re-delivers nothing; after every (re)connect the main loop resyncs, and
  the chunks still missing are subscribed again: the broker sends exactly their retained copies.
  The resync waits for the main loop (not paho's thread) because chunks received just before the
  drop may still sit in the inbox: only the main loop knows they are held.

The book is pure (no paho, no lock: agent.link holds the lock and sends what it returns). Its
record (``<state>/fleet/subscriptions.json``) outlives a restart, so a daemon restarted with the
session present subscribes nothing it already has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from plada.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)


class SubscriptionRecord(BaseModel):
    """What one broker session (``session``: client id at broker URL) holds for this device."""

    model_config = ConfigDict(extra="forbid")

    session: str
    standing: list[str] = []  # filters the broker acknowledged (SUBACK) in that session
    chunks: list[str] = []  # chunk topics subscribed there and not yet seen unsubscribed


def load_record(path: Path | None, *, session: str) -> SubscriptionRecord:
    """The stored record of `session`; an empty one when there is none (or it is unreadable or
    of another session: then everything is subscribed again, which costs retained copies only)."""
    empty = SubscriptionRecord(session=session)
    if path is None or not path.exists():
        return empty
    try:
        record = SubscriptionRecord.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        logger.warning("%s unreadable, subscribing again: %s", path, exc)
        return empty
    return record if record.session == session else empty


@dataclass(frozen=True)
class Plan:
    """What to send now: SUBSCRIBE these, UNSUBSCRIBE those (either may be empty)."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    retain_handling: int = 0  # MQTT 5: 0 = send retained copies, 1 = only for a new subscription


class SubscriptionBook:
    def __init__(self, path: Path | None, *, session: str, standing: Iterable[str]) -> None:
        self._path = path
        self._standing = list(standing)
        self._record = load_record(path, session=session)
        self._in_session = set(self._record.chunks)  # chunk topics possibly subscribed there
        self._wanted: set[str] = set()
        self._synced = False  # the main loop resynced the chunks since the last CONNACK
        self._unsubscribing: dict[int, list[str]] = {}  # UNSUBSCRIBE mid -> its topics

    # -- the connection -------------------------------------------------------------------------
    def connected(self, *, session_present: bool, legacy: Iterable[str]) -> Plan:
        """After CONNACK: the standing filters to (re)subscribe and the filters to drop."""
        self._synced = False
        self._unsubscribing.clear()  # lost with the connection; unsubscribed again at resync
        if not session_present:  # a new session holds no subscription at all
            self._record.standing = []
            self._in_session.clear()
            self._save()
        if self._record.standing == self._standing:
            return Plan()
        stale = [*legacy, *self._record.standing] if session_present else []
        return Plan(
            subscribe=list(self._standing),
            unsubscribe=sorted(set(stale) - set(self._standing)),
            # a present session without our record may still lack retained copies we need
            retain_handling=0 if session_present else 1,
        )

    def standing_acknowledged(self) -> None:
        self._record.standing = list(self._standing)
        self._save()

    def disconnected(self) -> None:
        self._synced = False
        self._unsubscribing.clear()

    # -- chunks ---------------------------------------------------------------------------------
    def want(self, topics: Iterable[str], *, resync: bool, connected: bool) -> Plan:
        """The chunk topics the device is missing now. With `resync` (the main loop has handled
        the connect), every missing one is subscribed again, so lost chunks are sent again."""
        self._wanted = set(topics)
        if not connected:
            return Plan()
        if resync:
            self._synced = True
            subscribe = set(self._wanted)
        elif self._synced:
            subscribe = self._wanted - self._in_session
        else:  # before the resync a chunk still in the inbox could be asked for again
            subscribe = set()
        pending = {t for topics in self._unsubscribing.values() for t in topics}
        unsubscribe = self._in_session - self._wanted - pending
        if subscribe - self._in_session:
            self._in_session |= subscribe
            self._save()
        return Plan(subscribe=sorted(subscribe), unsubscribe=sorted(unsubscribe))

    def unsubscribing(self, mid: int, topics: list[str]) -> None:
        self._unsubscribing[mid] = topics

    def unsubscribed(self, mid: int) -> None:
        """UNSUBACK: the broker's session no longer holds those topics."""
        topics = self._unsubscribing.pop(mid, None)
        if topics:
            self._in_session -= set(topics)
            self._save()

    @property
    def wanted(self) -> set[str]:
        return set(self._wanted)

    @property
    def in_session(self) -> set[str]:
        return set(self._in_session)

    def _save(self) -> None:
        self._record.chunks = sorted(self._in_session)
        if self._path is None:
            return
        try:
            write_bytes_atomic(self._path, self._record.model_dump_json().encode())
        except OSError as exc:  # the next start subscribes again: retained copies, no loss
            logger.warning("subscription record %s not written: %s", self._path, exc)
