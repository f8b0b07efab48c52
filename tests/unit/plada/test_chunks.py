"""Chunking and reassembly of payloads."""

from __future__ import annotations

import random

import cbor2
import pytest

from plada.chunks import Reassembler, message_kind, split_payload
from plada.errors import ChunkError


def _payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def test_split_payload_respects_limit_and_reassembles_in_any_order() -> None:
    # Prepare
    data = _payload(10_000)
    parts = split_payload(data, max_chunk_bytes=2048)
    messages = [parts.manifest, *parts.chunks, parts.chunks[1], parts.chunks[0]]  # + duplicates
    random.Random(1).shuffle(messages)
    reassembler = Reassembler()
    # Execute
    for message in messages:
        if message_kind(message) == "manifest":
            reassembler.add_manifest(message)
        else:
            reassembler.add_chunk(message)
    # Assert
    assert len(parts.chunks) == 6
    assert all(len(m) <= 2048 for m in [parts.manifest, *parts.chunks])
    assert reassembler.is_complete()
    assert reassembler.payload() == data


def test_split_payload_default_limit_is_128_kib() -> None:
    parts = split_payload(_payload(300_000))
    assert len(parts.chunks) == 3
    assert max(len(c) for c in parts.chunks) <= 131_072


def test_reassembler_rejects_truncated_chunk() -> None:
    parts = split_payload(_payload(5000), max_chunk_bytes=2048)
    reassembler = Reassembler()
    reassembler.add_manifest(parts.manifest)
    chunk = cbor2.loads(parts.chunks[1])
    chunk["data"] = chunk["data"][:-10]
    with pytest.raises(ChunkError, match=r"chunk 1.*sha256"):
        reassembler.add_chunk(cbor2.dumps(chunk, canonical=True))
    with pytest.raises(ChunkError, match="plada-chunk"):
        reassembler.add_chunk(parts.chunks[2][:-3])
    assert not reassembler.is_complete()


def test_reassembler_accepts_identical_duplicate_rejects_conflicting_one() -> None:
    data = _payload(5000)
    parts = split_payload(data, max_chunk_bytes=2048)
    reassembler = Reassembler()
    reassembler.add_chunk(parts.chunks[0])
    reassembler.add_chunk(parts.chunks[0])
    forged = cbor2.loads(parts.chunks[0])
    forged["data"] = bytes(len(forged["data"]))
    reassembler.add_chunk(cbor2.dumps(forged, canonical=True))  # held until the manifest decides
    with pytest.raises(ChunkError, match="chunk 0: held before the manifest"):
        reassembler.add_manifest(parts.manifest)
    with pytest.raises(ChunkError, match="fails its sha256"):
        reassembler.add_chunk(cbor2.dumps(forged, canonical=True))
    for chunk in parts.chunks[1:]:
        reassembler.add_chunk(chunk)
    assert reassembler.payload() == data


def test_reassembler_forged_chunk_first_does_not_shut_out_the_real_one() -> None:
    # Prepare: a forger who saw the payload hash sends chunk 0 before the real one
    data = _payload(5000)
    parts = split_payload(data, max_chunk_bytes=2048)
    forged = cbor2.loads(parts.chunks[0])
    forged["data"] = bytes(len(forged["data"]))
    reassembler = Reassembler()
    # Execute
    reassembler.add_chunk(cbor2.dumps(forged, canonical=True))
    for chunk in parts.chunks:
        reassembler.add_chunk(chunk)
    with pytest.raises(ChunkError, match="dropped 1 such copy"):
        reassembler.add_manifest(parts.manifest)
    # Assert
    assert reassembler.payload() == data


def test_reassembler_drops_bad_chunk_held_before_manifest() -> None:
    data = _payload(5000)
    parts = split_payload(data, max_chunk_bytes=2048)
    forged = cbor2.loads(parts.chunks[0])
    forged["data"] = bytes(len(forged["data"]))
    reassembler = Reassembler()
    reassembler.add_chunk(cbor2.dumps(forged, canonical=True))
    with pytest.raises(ChunkError, match="chunk 0"):
        reassembler.add_manifest(parts.manifest)
    for chunk in parts.chunks:
        reassembler.add_chunk(chunk)
    assert reassembler.payload() == data


def test_reassembler_rejects_chunk_of_other_payload() -> None:
    one = split_payload(_payload(5000, seed=1), max_chunk_bytes=2048)
    two = split_payload(_payload(5000, seed=2), max_chunk_bytes=2048)
    reassembler = Reassembler()
    reassembler.add_manifest(one.manifest)
    with pytest.raises(ChunkError, match="another payload"):
        reassembler.add_chunk(two.chunks[0])


def test_reassembler_payload_raises_until_complete() -> None:
    parts = split_payload(_payload(5000), max_chunk_bytes=2048)
    reassembler = Reassembler()
    with pytest.raises(ChunkError, match="manifest"):
        reassembler.payload()
    reassembler.add_manifest(parts.manifest)
    reassembler.add_chunk(parts.chunks[0])
    assert reassembler.missing() == [1, 2]
    with pytest.raises(ChunkError, match="missing"):
        reassembler.payload()


def test_split_payload_rejects_tiny_limit() -> None:
    with pytest.raises(ChunkError, match="max_chunk_bytes"):
        split_payload(b"x" * 10, max_chunk_bytes=100)
