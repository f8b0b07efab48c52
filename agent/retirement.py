"""Applying a signed retirement (plada.tombstone) that arrived on a task's ``.../retired`` topic.

The tombstone is verified with the daemon's keys exactly like a payload: unsigned, signed by an
unknown key, badly signed, or naming another task than its topic are payload faults, refused for
good and reported. A good one removes the task's heads from the model store (which keeps the
task's record, marked retired, so the retired versions are never installed again), drops a
waiting install of a retired version, and is reported in the trial log and status. The
retained tombstone comes again at every connect: one already applied changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from agent.models import ModelStore, RetireOutcome
from agent.orders import open_order
from plada.tombstone import Tombstone, decode_tombstone

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.task_queue import TaskQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retirement:
    tombstone: Tombstone
    digest: str
    outcome: RetireOutcome


def retire(
    data: bytes,
    *,
    topic_task: str | None,
    keys: Mapping[str, Ed25519PublicKey],
    allow_unsigned: bool,
    store: ModelStore,
    queue: TaskQueue,
) -> Retirement | None:
    """Verify and apply a tombstone; None when it was refused (reported) or already known."""
    opened = open_order(
        data,
        decode=partial(decode_tombstone, trusted_keys=keys, allow_unsigned=allow_unsigned),
        topic_task=topic_task,
        names="retire: the tombstone retires",
        queue=queue,
    )
    if opened is None:
        return None
    tombstone, digest = opened
    record = store.task_record(tombstone.task)
    if record is not None and record.retired is not None:
        if record.retired.version >= tombstone.version:
            return None  # the retained tombstone again (every connect): nothing to do
    waiting = queue.state.pending.get(tombstone.task)
    if waiting is not None and waiting.version <= tombstone.version:
        queue.drop(waiting)
    outcome = store.retire(tombstone.task, version=tombstone.version, tombstone_digest=digest)
    if outcome.newer is not None:
        logger.info(
            "retirement of %s up to v%d ignored: v%d is installed",
            tombstone.task,
            tombstone.version,
            outcome.newer,
        )
    else:
        logger.info(
            "task %s retired (up to v%d): %d head(s) removed",
            tombstone.task,
            tombstone.version,
            len(outcome.removed),
        )
    return Retirement(tombstone, digest, outcome)
