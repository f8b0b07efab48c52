"""Applying a signed revocation (plada.revocation) that arrived on a task's ``.../revoked`` topic.

A staged rollout whose canary failed revokes the version it published (builder.fleet.rollout).
The revocation is verified with the daemon's keys exactly like a payload: unsigned, signed by an
unknown key, badly signed, or naming another task than its topic are payload faults, refused for
good and reported. A good one is a rollback ordered from outside: the revoked payload's head is
removed and the task serves the head it served before (or none), the payload is marked rolled
back so the version policy (agent.versions) refuses it on every later delivery, and a waiting
install of it is dropped. The retained revocation comes again at every connect: one already
applied changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from agent.models import ModelStore, RevokeOutcome
from agent.orders import open_order
from plada.revocation import Revocation, decode_revocation

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.task_queue import TaskQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revoked:
    revocation: Revocation
    digest: str  # of the revocation message
    outcome: RevokeOutcome


def revoke(
    data: bytes,
    *,
    topic_task: str | None,
    keys: Mapping[str, Ed25519PublicKey],
    allow_unsigned: bool,
    store: ModelStore,
    queue: TaskQueue,
) -> Revoked | None:
    """Verify and apply a revocation; None when it was refused (reported) or already applied."""
    opened = open_order(
        data,
        decode=partial(decode_revocation, trusted_keys=keys, allow_unsigned=allow_unsigned),
        topic_task=topic_task,
        names="revoke: the revocation names",
        queue=queue,
    )
    if opened is None:
        return None
    revocation, digest = opened
    waiting = queue.state.pending.get(revocation.task)
    if waiting is not None and waiting.payload_id == revocation.payload_id:
        queue.drop(waiting)
    outcome = store.revoke(
        revocation.task,
        version=revocation.version,
        payload_digest=revocation.payload_id,
        revocation_digest=digest,
    )
    if outcome.already:
        return None  # the retained revocation again (every connect): nothing to do
    logger.info(
        "task %s v%d revoked: %d head(s) removed, serving %s",
        revocation.task,
        revocation.version,
        len(outcome.removed),
        f"v{outcome.serving}" if outcome.serving is not None else "nothing",
    )
    return Revoked(revocation, digest, outcome)
