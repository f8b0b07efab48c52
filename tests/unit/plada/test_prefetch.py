"""plada.prefetch: batches in order, two buffers taking turns, errors reach the caller."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from plada.prefetch import prefetched_batches


def test_batches_come_in_order_and_reuse_two_buffers() -> None:
    # Prepare: spans of 4, 4, 4 and a shorter last one
    rows = range(14)
    spans = [rows[i : i + 4] for i in range(0, 14, 4)]
    given: list[int | None] = []

    def load(span: Sequence[int], buffer: np.ndarray | None) -> np.ndarray:
        given.append(None if buffer is None else id(buffer))
        out = np.empty(len(span)) if buffer is None else buffer
        out[:] = list(span)
        return out

    # Execute: copy each batch before asking for the next (it is valid until then)
    seen = [(list(span), batch.copy()) for span, batch in prefetched_batches(load, spans)]
    # Assert
    assert [s for s, _ in seen] == [list(s) for s in spans]
    assert all(np.array_equal(batch, span) for span, batch in seen)
    assert given[0] is None and given[1] is None  # two new buffers, then turns
    assert given[2] is not None and given[2] != given[3]
    assert len(set(filter(None, given))) == 1  # the 4th batch has 2 rows: a new array


def test_a_batch_is_not_overwritten_while_the_caller_holds_it() -> None:
    # Prepare
    spans = [range(i, i + 2) for i in range(0, 20, 2)]

    def load(span: Sequence[int], buffer: np.ndarray | None) -> np.ndarray:
        out = np.empty(2) if buffer is None else buffer
        out[:] = list(span)
        return out

    # Execute / Assert: while the caller works on a batch, the next one is being made
    for span, batch in prefetched_batches(load, spans):
        first = batch.copy()
        np.sqrt(np.arange(20000.0)).sum()  # some work while the prefetch runs
        assert np.array_equal(batch, first) and batch[0] == span[0]


def test_a_failing_load_raises_in_the_caller() -> None:
    # Prepare
    def load(span: Sequence[int], buffer: np.ndarray | None) -> np.ndarray:
        if span[0] == 4:
            raise ValueError("bad image 4")
        return np.zeros(len(span))

    # Execute / Assert
    batches = prefetched_batches(load, [range(4), range(4, 8)])
    next(batches)
    with pytest.raises(ValueError, match="bad image 4"):
        next(batches)


def test_no_spans_no_batches() -> None:
    assert list(prefetched_batches(lambda s, b: np.zeros(1), [])) == []
