"""Publish a signed task payload once, retained, for a whole fleet group.

A payload no larger than ``max_chunk_bytes`` goes out as one retained QoS 1 message on
``<base>/group/<group>/task``. A larger one is split (plada.chunks): the manifest on
``.../task/manifest`` and chunk ``i`` on ``.../task/chunk/<i>``, all retained. Retained leftovers
of an earlier publish under the group's task topics (a whole payload, a manifest, surplus chunks)
are cleared with zero-length retained messages, so a device joining later sees exactly one task.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from builder.errors import PublishError
from builder.fleet.session import BrokerOptions, BrokerSession
from plada.chunks import DEFAULT_MAX_CHUNK_BYTES, split_payload
from plada.topics import TopicScheme

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


def publish_payload(
    data: bytes,
    *,
    options: BrokerOptions,
    group: str,
    base_topic: str = "plada",
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
) -> PublishReport:
    """Publish ``data`` retained for ``group``; returns what was sent once all of it was acked."""
    if not data:
        raise PublishError("payload is empty")
    topics = TopicScheme(base_topic)
    start = time.monotonic()
    if len(data) <= max_chunk_bytes:
        messages = [(topics.task(group), data)]
    else:
        chunked = split_payload(data, max_chunk_bytes=max_chunk_bytes)
        messages = [(topics.task_manifest(group), chunked.manifest)]
        messages += [(topics.task_chunk(group, i), c) for i, c in enumerate(chunked.chunks)]
    with BrokerSession(options) as session:
        old = session.collect_retained(topics.task_filter(group), quiet_s=0.3)
        new_topics = {t for t, _ in messages}
        stale = sorted(t for t, body in old.items() if body and t not in new_topics)
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
    )
    logger.info("published %d bytes to group %s in %d message(s)", len(data), group, len(messages))
    return report
