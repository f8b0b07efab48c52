"""map_ordered: a function over a stream in worker threads, results in input order, bounded ahead.

For work whose heavy part releases the GIL (Pillow's PNG encoder and zlib, hashlib over large
buffers): the corpus writer encodes images on every core while its own thread appends them in
order, so the bytes, the index and the fingerprint are what one thread would have written.
`Executor.map` would submit the whole stream at once (every image in memory); here at most
`ahead` items are in flight.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

__all__ = ["available_cores", "map_ordered"]

T = TypeVar("T")
R = TypeVar("R")


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_count(workers: int | None) -> int:
    """`workers`, or one per core the process may run on when it is None."""
    return available_cores() if workers is None else workers


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    ahead: int | None = None,
    chunk: int = 1,
    name: str = "ordered",
) -> Generator[R, None, None]:
    """fn(item) for each item, in order; `workers` threads, at most `ahead` tasks of `chunk`
    items each submitted and not yet yielded (default 4 per worker); `workers` None: one per core
    (`available_cores`). workers <= 1 runs inline,
    without threads. A chunk of many items makes cheap items worth a thread: each task costs a
    future and a hand-over of the GIL.

    The first exception (from fn or from the stream) is raised at its item's place; work
    submitted after it is cancelled or discarded. Closing the generator early stops the pool.
    """
    workers = worker_count(workers)
    if workers <= 1:
        yield from map(fn, items)
        return
    window = ahead if ahead is not None else 4 * workers
    if window < 1 or chunk < 1:
        raise ValueError(f"ahead and chunk must be >= 1, got {window} and {chunk}")

    def run(batch: list[T]) -> list[R]:
        return [fn(item) for item in batch]

    pending: deque[Future[list[R]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name) as pool:
        try:
            for batch in _batches(items, chunk):
                pending.append(pool.submit(run, batch))
                if len(pending) >= window:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    it = iter(items)
    while batch := list(islice(it, size)):
        yield batch
