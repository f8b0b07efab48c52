"""map_ordered: input order kept, bounded look-ahead, errors at their place."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from plada.ordered_pool import map_ordered


def _slow_square(x: int) -> int:
    time.sleep(0.002 * (x % 3))  # later items often finish first
    return x * x


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_map_ordered_yields_in_input_order(workers: int) -> None:
    # Execute
    out = list(map_ordered(_slow_square, range(40), workers=workers))
    # Assert
    assert out == [x * x for x in range(40)]


def test_map_ordered_runs_in_worker_threads() -> None:
    # Prepare
    main = threading.get_ident()
    # Execute
    idents = set(map_ordered(lambda _: threading.get_ident(), range(16), workers=2))
    # Assert
    assert main not in idents


def test_map_ordered_reads_at_most_ahead_items_past_what_it_yielded() -> None:
    # Prepare
    pulled: list[int] = []

    def stream() -> Iterator[int]:
        for i in range(100):
            pulled.append(i)
            yield i

    results = map_ordered(lambda x: x, stream(), workers=2, ahead=5)
    # Execute
    first = [next(results) for _ in range(3)]
    # Assert: 3 yielded, at most 5 more submitted
    assert first == [0, 1, 2]
    assert len(pulled) <= 3 + 5
    results.close()


def test_map_ordered_raises_the_first_error_at_its_place() -> None:
    # Prepare
    def fail_on_7(x: int) -> int:
        if x == 7:
            raise ValueError("item 7 is bad")
        return x

    got: list[int] = []
    # Execute / Assert
    with pytest.raises(ValueError, match="item 7"):
        for value in map_ordered(fail_on_7, range(20), workers=2):
            got.append(value)
    assert got == list(range(7))


def test_map_ordered_passes_on_an_error_of_the_stream() -> None:
    # Prepare
    def stream() -> Iterator[int]:
        yield 1
        raise OSError("source unreadable")

    # Execute / Assert
    with pytest.raises(OSError, match="source unreadable"):
        list(map_ordered(lambda x: x, stream(), workers=2))


def test_map_ordered_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match="ahead"):
        list(map_ordered(lambda x: x, range(3), workers=2, ahead=0))
