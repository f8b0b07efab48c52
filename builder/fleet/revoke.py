"""Revoke one published task version in a group: what a staged rollout does when its canary fails.

A signed revocation (plada.revocation) is published retained on
``<base>/group/<group>/tasks/<task>/revoked``; devices that installed the version roll back to the
head they served before (or none) and refuse it from then on (agent.revocation). The group's
retained copy of the revoked payload (whole, or manifest and chunks) is cleared in the same
session, so a device of the group that connects later never installs it, and what was retained
before the rollout published (``restore``: the previous version) is put back, so a late device
gets what the rest of the group serves. A retained payload that is not the revoked one (a newer
version published since) is left alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.fleet.publish import _collect
from builder.fleet.publish_check import check_revocation, retained_task
from builder.fleet.session import BrokerOptions, BrokerSession
from plada.topics import TopicKind, TopicScheme

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

logger = logging.getLogger(__name__)

PAYLOAD_KINDS = (TopicKind.TASK, TopicKind.MANIFEST, TopicKind.CHUNK)


@dataclass(frozen=True)
class RevokeReport:
    group: str
    task: str
    version: int
    payload_id: str
    topic: str  # where the revocation is retained
    cleared: list[str]  # retained topics of the revoked payload, now empty
    restored: list[str]  # retained topics given back their content from before the rollout
    seconds: float


def payload_topics(retained: Mapping[str, bytes], topics: TopicScheme) -> dict[str, bytes]:
    """The retained pieces of a task's payload (whole, manifest, chunks) among its topics."""
    out: dict[str, bytes] = {}
    for topic, body in retained.items():
        parsed = topics.parse(topic)
        if body and parsed is not None and parsed.kind in PAYLOAD_KINDS:
            out[topic] = body
    return out


def retained_payload(
    options: BrokerOptions, *, group: str, task: str, base_topic: str = "plada"
) -> dict[str, bytes]:
    """What a group retains of ``task``'s payload now (the ``restore`` of a later revocation)."""
    topics = TopicScheme(base_topic)
    with BrokerSession(options) as session:
        own, _ = _collect(session, topics, group=group, task=task)
    return payload_topics(own, topics)


def revoke_version(
    revocation: bytes,
    *,
    options: BrokerOptions,
    group: str,
    base_topic: str = "plada",
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    restore: Mapping[str, bytes] | None = None,
) -> RevokeReport:
    """Publish a signed revocation retained for ``group``, clear the group's retained copy of the
    revoked payload and put ``restore`` back. Refused (PublishRefusedError) unless the revocation
    decodes and is signed (and verifies under ``trusted_keys`` when given)."""
    info = check_revocation(revocation, trusted_keys=trusted_keys)
    rev = info.revocation
    topics = TopicScheme(base_topic)
    topic = topics.task_revoked(group, rev.task)
    start = time.monotonic()
    with BrokerSession(options) as session:
        own, _ = _collect(session, topics, group=group, task=rev.task)
        current = payload_topics(own, topics)
        held = retained_task(current, topics)
        stale = sorted(current) if held is not None and held.digest == rev.payload_id else []
        back = dict(restore or {}) if stale else {}
        previous = retained_task(back, topics)
        if previous is None or previous.digest == rev.payload_id:
            # Nothing decodable to give back, or the revoked payload itself (a rollout run
            # again after a crash snapshots what the first run published): never restore that.
            back = {}
        # The revocation goes first: a device connecting in between sees it, and so refuses the
        # payload it may still find retained.
        mids = [session.publish(topic, revocation)]
        mids += [session.publish(t, b"") for t in stale if t not in back]
        mids += [session.publish(t, body) for t, body in sorted(back.items())]
        session.wait_acked(mids)
    logger.info("revoked %s v%d in group %s", rev.task, rev.version, group)
    return RevokeReport(
        group=group,
        task=rev.task,
        version=rev.version,
        payload_id=rev.payload_id,
        topic=topic,
        cleared=[t for t in stale if t not in back],
        restored=sorted(back),
        seconds=round(time.monotonic() - start, 3),
    )


__all__ = ["RevokeReport", "payload_topics", "retained_payload", "revoke_version"]
