"""Publish a signed task payload once, retained, for a whole fleet group; retire a task.

With ``check=True`` (what `plada-build publish` does) nothing is sent unless the payload decodes,
is signed (and verifies under ``trusted_keys`` when given), has not expired, and is not older than
the same task already retained for the group, nor retired there at its version (``force``
overrides only the last two): a retained message is what every device joining later receives,
so a bad one would replace the real task for them.

Every task has its own retained topics under the group (plada.topics): a payload no larger than
``max_chunk_bytes`` goes out as one retained QoS 1 message on ``<base>/group/<group>/tasks/<task>``;
a larger one is split (plada.chunks): the manifest on ``.../tasks/<task>/manifest`` and chunk
``i`` on ``.../tasks/<task>/chunk/<i>``, all retained. Retained leftovers of an earlier publish of
the *same* task (a whole payload, a manifest, surplus chunks, a retirement) are cleared with
zero-length retained messages, so a device joining later sees exactly that task's newest
payload, beside every other task of the group, which is left alone.

Migration from the one-task scheme (``<base>/group/<group>/task``...): a retained payload there
of the same task is cleared when the task is published on its own topics; one of another task
stays (agents still read it) until that task is published again.

`retire_task` publishes a signed tombstone (plada.tombstone) retained on
``.../tasks/<task>/retired`` and clears the task's retained payload (on its own topics, and on
the one-task topics if it is that task).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.errors import PublishError
from builder.fleet.publish_check import (
    check_not_older,
    check_not_retired,
    check_not_revoked,
    check_publishable,
    check_retirement,
    retained_revocation,
    retained_task,
    retained_tombstone,
)
from builder.fleet.session import BrokerOptions, BrokerSession
from plada.chunks import DEFAULT_MAX_CHUNK_BYTES, split_payload
from plada.errors import PayloadError
from plada.payload import inspect_payload
from plada.topics import TopicScheme

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)


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
    task: str | None = None  # None: the payload could not be read (unchecked publish, tests)


def _task_of(data: bytes) -> str | None:
    try:
        return inspect_payload(data, trusted_keys={}).payload.task
    except PayloadError:
        return None


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
    task: str | None = None,
) -> PublishReport:
    """Publish ``data`` retained on its task's topics of ``group``; returns what was sent once
    all of it was acked.

    ``check``: refuse a payload no device would accept, or an older version than the retained
    task unless ``force`` (see the module docstring). Tests that publish bad payloads on purpose
    leave it off; such a payload goes to the topics of ``task`` if given, else of the task it
    names if it can be read at all, else to the one-task topics.
    """
    if not data:
        raise PublishError("payload is empty")
    info = check_publishable(data, trusted_keys=trusted_keys) if check else None
    name = task or (info.payload.task if info is not None else _task_of(data))
    topics = TopicScheme(base_topic)
    start = time.monotonic()
    if len(data) <= max_chunk_bytes:
        messages = [(topics.task(group, name), data)]
    else:
        chunked = split_payload(data, max_chunk_bytes=max_chunk_bytes)
        messages = [(topics.task_manifest(group, name), chunked.manifest)]
        messages += [(topics.task_chunk(group, i, name), c) for i, c in enumerate(chunked.chunks)]
    with BrokerSession(options) as session:
        own, legacy = _collect(session, topics, group=group, task=name)
        if info is not None:
            check_not_older(info, retained_task(own, topics), force=force)
            check_not_older(info, retained_task(legacy, topics), force=force)
            check_not_retired(info, retained_tombstone(own, topics), force=force)
            check_not_revoked(info, retained_revocation(own, topics), force=force)
        stale = _stale(own, legacy, topics, task=name, keep={t for t, _ in messages})
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
        task=name,
    )
    logger.info(
        "published %d bytes of task %s to group %s in %d message(s)",
        len(data),
        name,
        group,
        len(messages),
    )
    return report


def _collect(
    session: BrokerSession, topics: TopicScheme, *, group: str, task: str | None
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(the task's own retained topics, the one-task scheme's) of the group. A session gathers
    retained messages across subscriptions, so they are told apart by parsing each topic."""
    filters = [topics.task_filter(group)]
    if task is not None:
        filters.append(topics.task_filter(group, task))
    retained: dict[str, bytes] = {}
    for topic_filter in filters:
        retained |= session.collect_retained(topic_filter, quiet_s=0.3)
    own: dict[str, bytes] = {}
    legacy: dict[str, bytes] = {}
    for topic, body in retained.items():
        parsed = topics.parse(topic)
        if parsed is None or parsed.group != group:
            continue
        if parsed.task is None:
            legacy[topic] = body
        elif parsed.task == task:
            own[topic] = body
    if task is None:  # an unreadable payload goes to the one-task topics: those are its own
        return legacy, {}
    return own, legacy


def _stale(
    own: Mapping[str, bytes],
    legacy: Mapping[str, bytes],
    topics: TopicScheme,
    *,
    task: str | None,
    keep: set[str],
) -> list[str]:
    """Retained topics to clear: the task's own leftovers, and the one-task topics when what is
    retained there is this task (another task there is left for its own next publish)."""
    stale = [t for t, body in own.items() if body and t not in keep]
    old = retained_task(legacy, topics)
    if legacy and old is not None and old.payload.task == task:
        stale += [t for t, body in legacy.items() if body and t not in keep]
    return sorted(stale)


@dataclass(frozen=True)
class RetireReport:
    group: str
    task: str
    version: int
    topic: str
    cleared: list[str]
    seconds: float


def retire_task(
    tombstone: bytes,
    *,
    options: BrokerOptions,
    group: str,
    base_topic: str = "plada",
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
) -> RetireReport:
    """Publish a signed retirement retained for ``group`` and clear the task's retained payload.

    Refused (PublishRefusedError) unless the tombstone decodes and is signed (and verifies under
    ``trusted_keys`` when given): devices refuse anything else, and a forged one must not clear
    the real task for late joiners either.
    """
    info = check_retirement(tombstone, trusted_keys=trusted_keys)
    task, version = info.tombstone.task, info.tombstone.version
    topics = TopicScheme(base_topic)
    topic = topics.task_retired(group, task)
    start = time.monotonic()
    with BrokerSession(options) as session:
        own, legacy = _collect(session, topics, group=group, task=task)
        stale = [t for t, b in own.items() if b and t != topic]
        old = retained_task(legacy, topics)
        if old is not None and old.payload.task == task and old.payload.version <= version:
            stale += [t for t, b in legacy.items() if b]
        stale = sorted(stale)
        # The tombstone goes first: a device connecting in between sees the retirement, never
        # the task's payload without it.
        mids = [session.publish(topic, tombstone)]
        mids += [session.publish(t, b"") for t in stale]
        session.wait_acked(mids)
    logger.info("retired task %s up to v%d in group %s", task, version, group)
    return RetireReport(
        group=group,
        task=task,
        version=version,
        topic=topic,
        cleared=stale,
        seconds=round(time.monotonic() - start, 3),
    )


__all__ = [
    "PublishReport",
    "RetireReport",
    "publish_payload",
    "retire_task",
]
