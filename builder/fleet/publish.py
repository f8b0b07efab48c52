"""Publish a signed task payload once, retained, for a whole fleet group.

With ``check=True`` (what `plada-build publish` does) nothing is sent unless the payload decodes,
is signed (and verifies under ``trusted_keys`` when given), has not expired, and is not older than
the task already retained for the group (``force`` overrides only the last): a retained message
is what every device joining later receives, so a bad one would replace the real task for them.

A payload no larger than ``max_chunk_bytes`` goes out as one retained QoS 1 message on
``<base>/group/<group>/task``. A larger one is split (plada.chunks): the manifest on
``.../task/manifest`` and chunk ``i`` on ``.../task/chunk/<i>``, all retained. Retained leftovers
of an earlier publish under the group's task topics (a whole payload, a manifest, surplus chunks)
are cleared with zero-length retained messages, so a device joining later sees exactly one task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.errors import PublishError
from builder.fleet.publish_check import check_not_older, check_publishable, retained_task
from builder.fleet.session import BrokerOptions, BrokerSession
from plada.chunks import DEFAULT_MAX_CHUNK_BYTES, split_payload
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
) -> PublishReport:
    """Publish ``data`` retained for ``group``; returns what was sent once all of it was acked.

    ``check``: refuse a payload no device would accept, or an older version than the retained
    task unless ``force`` (see the module docstring). Tests that publish bad payloads on purpose
    leave it off.
    """
    if not data:
        raise PublishError("payload is empty")
    info = check_publishable(data, trusted_keys=trusted_keys) if check else None
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
        if info is not None:
            check_not_older(info, retained_task(old, topics), force=force)
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
