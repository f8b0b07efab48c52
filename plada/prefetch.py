"""Batches made ahead in a thread while the caller embeds the current one (builder and agent).

Decoding PNGs and preprocessing them (Pillow and numpy release the GIL) run beside ONNX Runtime,
which releases it too, so on two cores the next batch is ready when inference wants it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

__all__ = ["prefetched_batches"]


def prefetched_batches(
    load: Callable[[Sequence[int], np.ndarray | None], np.ndarray],
    spans: Sequence[Sequence[int]],
) -> Iterator[tuple[Sequence[int], np.ndarray]]:
    """(span, batch) for each span of row indices; `load(span, buffer)` makes the next batch in
    a thread while the caller embeds this one, so decoding and preprocessing (Pillow and numpy
    release the GIL) overlap with inference on the other core.

    Two input buffers take turns: a batch is valid until the caller asks for the one after it.
    Reusing them keeps the 10-30 MB batches out of fresh mmaps (page faults on every batch,
    bench/notes/embed-profile.md in the repository).
    """
    buffers: list[np.ndarray | None] = [None, None]

    def task(i: int) -> np.ndarray:
        buffer = buffers[i % 2]
        if buffer is not None and len(buffer) != len(spans[i]):
            buffer = None  # a shorter last batch: a new array
        buffers[i % 2] = batch = load(spans[i], buffer)
        return batch

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-decode") as pool:
        pending: Future[np.ndarray] | None = pool.submit(task, 0) if spans else None
        for i, span in enumerate(spans):
            if pending is None:  # unreachable: one future per span
                raise RuntimeError("batch prefetch lost a batch")
            batch = pending.result()
            # task i + 1 fills the buffer of batch i - 1, which the caller is done with
            pending = pool.submit(task, i + 1) if i + 1 < len(spans) else None
            yield span, batch
