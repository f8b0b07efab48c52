"""agent.receiver: which chunks are still missing and where from, across a restart and when a new
manifest supersedes a payload being assembled."""

from __future__ import annotations

import os
from pathlib import Path

from agent.receiver import Complete, Receiver, Source
from plada.chunks import ChunkedPayload, parse_chunk, parse_manifest, split_payload

SHAPES = Source(task="shapes")


def _split(seed: int) -> ChunkedPayload:
    return split_payload(os.urandom(4000) + bytes([seed]), max_chunk_bytes=1024)


def _add_manifest(receiver: Receiver, split: ChunkedPayload, source: Source | None) -> None:
    receiver.add(parse_manifest(split.manifest), split.manifest, received_at=1.0, source=source)


def _add_chunk(receiver: Receiver, split: ChunkedPayload, index: int) -> object:
    raw = split.chunks[index]
    return receiver.add(parse_chunk(raw), raw, received_at=1.0, source=SHAPES)


def test_missing_chunks_and_their_source_survive_a_restart(tmp_path: Path) -> None:
    # Prepare
    split = _split(1)
    first = Receiver(tmp_path, is_known=lambda _: False)
    _add_manifest(first, split, SHAPES)
    _add_chunk(first, split, 0)
    _add_chunk(first, split, 2)
    # Execute: a new process reloads what is on disk
    second = Receiver(tmp_path, is_known=lambda _: False)
    done = second.reload()
    # Assert
    count = len(split.chunks)
    assert done == []
    assert first.missing() == second.missing() == [(SHAPES, [1, *range(3, count)])]


def test_a_download_stored_without_its_source_asks_for_nothing_until_its_manifest_comes(
    tmp_path: Path,
) -> None:
    # Prepare: pieces stored by an agent from before sources were recorded
    split = _split(2)
    old = Receiver(tmp_path, is_known=lambda _: False)
    _add_manifest(old, split, None)
    _add_chunk(old, split, 0)
    owner = next(tmp_path.iterdir())
    (owner / "source.json").unlink()
    # Execute
    receiver = Receiver(tmp_path, is_known=lambda _: False)
    receiver.reload()
    unknown = receiver.missing()
    _add_manifest(receiver, split, SHAPES)  # sent again on a new subscription
    # Assert
    assert unknown == []
    assert receiver.missing() == [(SHAPES, list(range(1, len(split.chunks))))]


def test_a_new_manifest_on_the_same_topics_supersedes_the_partial_payload(tmp_path: Path) -> None:
    # Prepare: v1 half downloaded; another task's download beside it
    v1, v2, other = _split(3), _split(4), _split(5)
    receiver = Receiver(tmp_path, is_known=lambda _: False)
    _add_manifest(receiver, v1, SHAPES)
    _add_chunk(receiver, v1, 0)
    _add_manifest(receiver, other, Source(task="digits"))
    # Execute
    _add_manifest(receiver, v2, SHAPES)
    # Assert: v1 is gone from memory and disk; v2 and the other task are assembled
    owners = {p.name for p in tmp_path.iterdir()}
    assert parse_manifest(v1.manifest).owner not in owners
    assert receiver.missing() == [
        (Source(task="digits"), list(range(len(other.chunks)))),
        (SHAPES, list(range(len(v2.chunks)))),
    ]
    last = None
    for index in range(len(v2.chunks)):
        last = _add_chunk(receiver, v2, index)
    assert isinstance(last, Complete)
