"""Opening a signed order (a retirement or a revocation) that arrived on a task's topic.

Both are verified the same way before either is applied: a message already refused is dropped
unread, then it must decode with the daemon's keys and name the task of the topic it came on.
Any fault is refused for good and reported once (agent.task_queue), so a retained bad order
that comes again at every connect is not reported again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from agent.errors import TaskTopicError
from agent.faults import classify
from plada.errors import PayloadError
from plada.payload import payload_digest

if TYPE_CHECKING:
    from agent.task_queue import TaskQueue


class _Order(Protocol):
    @property
    def task(self) -> str: ...


OrderT = TypeVar("OrderT", bound=_Order)


def open_order(
    data: bytes,
    *,
    decode: Callable[[bytes], OrderT],
    topic_task: str | None,
    names: str,
    queue: TaskQueue,
) -> tuple[OrderT, str] | None:
    """(order, digest of the message), or None when it was refused (reported) before.

    `decode` verifies and decodes (raising PayloadError); `names` starts the message of a topic
    mismatch, e.g. "retire: the tombstone retires".
    """
    digest = payload_digest(data)
    if digest in queue.state.rejected:
        return None
    try:
        order = decode(data)
        if topic_task is not None and order.task != topic_task:
            raise TaskTopicError(
                f"{names} {order.task!r} but came on the topic of task {topic_task!r}"
            )
    except (PayloadError, TaskTopicError) as exc:
        queue.refuse(classify(exc), payload_id=digest, task=topic_task)
        return None
    return order, digest
