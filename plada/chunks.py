"""Split a payload into broker-sized chunks plus a manifest, and reassemble them, hash-checked.

AWS IoT Core rejects MQTT messages over 128 KiB, so every message this module produces (the manifest
and each chunk) is at most `max_chunk_bytes` long, CBOR framing included. Both are canonical CBOR:

    manifest = {"kind": "plada-manifest", "format": 1, "payload_sha256": bstr(32), "size": uint,
                "count": uint, "chunk_sha256": [bstr(32)]}
    chunk    = {"kind": "plada-chunk", "format": 1, "payload_sha256": bstr(32), "index": uint,
                "data": bstr}

A chunk is self-describing (payload hash + index + data), so chunks and the manifest may arrive in
any order, and duplicates are harmless. Every chunk is checked against its manifest hash, and the
joined payload against the payload hash, before `payload()` returns it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import cbor2

from plada import limits
from plada.errors import ChunkError

__all__ = [
    "DEFAULT_MAX_CHUNK_BYTES",
    "Chunk",
    "ChunkedPayload",
    "Manifest",
    "Reassembler",
    "message_kind",
    "parse_chunk",
    "parse_manifest",
    "split_payload",
]

DEFAULT_MAX_CHUNK_BYTES = 131_072  # AWS IoT Core's per-message cap
FORMAT_VERSION = 1
_MANIFEST = "plada-manifest"
_CHUNK = "plada-chunk"
_HASH_BYTES = 32
_CHUNK_OVERHEAD = 128  # CBOR keys, kind, hash and index around the data; measured ~90 bytes
_MIN_CHUNK_BYTES = 1024


@dataclass(frozen=True)
class ChunkedPayload:
    manifest: bytes  # CBOR
    chunks: list[bytes]  # CBOR, each self-describing


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def split_payload(data: bytes, *, max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> ChunkedPayload:
    """Cut `data` into chunks whose CBOR messages are each at most max_chunk_bytes long."""
    if max_chunk_bytes < _MIN_CHUNK_BYTES:
        raise ChunkError(f"max_chunk_bytes: {max_chunk_bytes} is below {_MIN_CHUNK_BYTES}")
    if not data:
        raise ChunkError("payload: nothing to split (0 bytes)")
    step = max_chunk_bytes - _CHUNK_OVERHEAD
    pieces = [data[i : i + step] for i in range(0, len(data), step)]
    if len(pieces) > limits.MAX_CHUNKS:
        raise ChunkError(f"payload: {len(pieces)} chunks, bound {limits.MAX_CHUNKS}")
    digest = _sha256(data)
    manifest = cbor2.dumps(
        {
            "kind": _MANIFEST,
            "format": FORMAT_VERSION,
            "payload_sha256": digest,
            "size": len(data),
            "count": len(pieces),
            "chunk_sha256": [_sha256(p) for p in pieces],
        },
        canonical=True,
    )
    if len(manifest) > max_chunk_bytes:
        raise ChunkError(f"manifest: {len(manifest)} bytes, over max_chunk_bytes {max_chunk_bytes}")
    chunks = [
        cbor2.dumps(
            {
                "kind": _CHUNK,
                "format": FORMAT_VERSION,
                "payload_sha256": digest,
                "index": i,
                "data": piece,
            },
            canonical=True,
        )
        for i, piece in enumerate(pieces)
    ]
    return ChunkedPayload(manifest=manifest, chunks=chunks)


def _load(data: bytes, kind: str) -> dict[str, Any]:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ChunkError(f"{kind}: expected bytes, got {type(data).__name__}")
    if len(data) > limits.MAX_PAYLOAD_BYTES:
        raise ChunkError(f"{kind}: {len(data)} bytes, bound {limits.MAX_PAYLOAD_BYTES}")
    limits.scan_cbor(bytes(data), where=kind, error=ChunkError, limit_error=ChunkError)
    try:
        obj = cbor2.loads(bytes(data))
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ChunkError(f"{kind}: not valid CBOR ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise ChunkError(f"{kind}: not a {kind} message")
    if obj.get("format") != FORMAT_VERSION:
        raise ChunkError(f"{kind}.format: {obj.get('format')!r}, this build reads {FORMAT_VERSION}")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ChunkError(f"{where}.{key}: missing or not {kind.__name__}")
    return value


def _hash_field(obj: dict[str, Any], key: str, where: str) -> bytes:
    value: bytes = _field(obj, key, bytes, where)
    if len(value) != _HASH_BYTES:
        raise ChunkError(f"{where}.{key}: {len(value)} bytes, expected {_HASH_BYTES}")
    return value


def message_kind(data: bytes) -> str:
    """'manifest', 'chunk' or 'payload' (anything that is neither, e.g. a whole envelope)."""
    for kind, name in ((_MANIFEST, "manifest"), (_CHUNK, "chunk")):
        try:
            _load(data, kind)
        except ChunkError:
            continue
        return name
    return "payload"


@dataclass(frozen=True)
class Manifest:
    """A parsed, bounds-checked manifest."""

    payload_sha256: bytes
    size: int
    chunk_hashes: tuple[bytes, ...]

    @property
    def owner(self) -> str:
        """Hex sha256 of the payload it describes (the payload id)."""
        return self.payload_sha256.hex()


@dataclass(frozen=True)
class Chunk:
    """A parsed chunk: not yet checked against any manifest."""

    payload_sha256: bytes
    index: int
    data: bytes

    @property
    def owner(self) -> str:
        return self.payload_sha256.hex()


def parse_manifest(data: bytes) -> Manifest:
    """Decode one manifest message; ChunkError names the field at fault."""
    obj = _load(data, _MANIFEST)
    digest = _hash_field(obj, "payload_sha256", "manifest")
    size: int = _field(obj, "size", int, "manifest")
    count: int = _field(obj, "count", int, "manifest")
    hashes = _field(obj, "chunk_sha256", list, "manifest")
    if not 1 <= size <= limits.MAX_PAYLOAD_BYTES:
        raise ChunkError(f"manifest.size: {size} outside 1..{limits.MAX_PAYLOAD_BYTES}")
    if not 1 <= count <= min(limits.MAX_CHUNKS, size) or len(hashes) != count:
        raise ChunkError(f"manifest.count: {count} chunks with {len(hashes)} hashes")
    for i, h in enumerate(hashes):
        if not isinstance(h, bytes) or len(h) != _HASH_BYTES:
            raise ChunkError(f"manifest.chunk_sha256[{i}]: not a {_HASH_BYTES}-byte hash")
    return Manifest(payload_sha256=digest, size=size, chunk_hashes=tuple(hashes))


def parse_chunk(data: bytes) -> Chunk:
    """Decode one chunk message; ChunkError names the field at fault."""
    obj = _load(data, _CHUNK)
    digest = _hash_field(obj, "payload_sha256", "chunk")
    index: int = _field(obj, "index", int, "chunk")
    piece: bytes = _field(obj, "data", bytes, "chunk")
    if not 0 <= index < limits.MAX_CHUNKS:
        raise ChunkError(f"chunk.index: {index} outside 0..{limits.MAX_CHUNKS - 1}")
    return Chunk(payload_sha256=digest, index=index, data=piece)


class Reassembler:
    """Collects one payload's manifest and chunks in any order; `payload()` returns verified bytes.

    Chunks that arrive before the manifest are held (at most MAX_PAYLOAD_BYTES in all) and checked
    when it arrives. Until then every distinct copy of a chunk index is held, so a forged chunk
    that arrives first cannot shut out the real one; the manifest then keeps the copy that
    matches its hash. Takes raw messages or ones already parsed (parse_chunk / parse_manifest).
    """

    def __init__(self) -> None:
        self._manifest: Manifest | None = None
        self._digest: bytes | None = None
        self._chunks: dict[int, bytes] = {}  # verified (or the only copy before the manifest)
        self._candidates: dict[int, list[bytes]] = {}  # index -> distinct copies, no manifest yet
        self._held_bytes = 0

    @property
    def payload_sha256(self) -> str | None:
        return None if self._digest is None else self._digest.hex()

    @property
    def has_manifest(self) -> bool:
        return self._manifest is not None

    def _claim(self, digest: bytes, where: str) -> None:
        if self._digest is None:
            self._digest = digest
        elif digest != self._digest:
            raise ChunkError(
                f"{where}.payload_sha256: {digest.hex()[:16]}... belongs to another payload "
                f"than {self._digest.hex()[:16]}..."
            )

    def add_manifest(self, data: bytes | Manifest) -> None:
        manifest = data if isinstance(data, Manifest) else parse_manifest(data)
        if self._manifest is not None:
            if manifest != self._manifest:
                raise ChunkError("manifest: differs from the manifest already received")
            return
        self._claim(manifest.payload_sha256, "manifest")
        self._manifest = manifest
        candidates, self._candidates = self._candidates, {}
        self._chunks, self._held_bytes = {}, 0
        dropped: list[int] = []
        for i in sorted(candidates):
            for copy in candidates[i]:
                if i < len(manifest.chunk_hashes) and _sha256(copy) == manifest.chunk_hashes[i]:
                    self._chunks[i] = copy
                    self._held_bytes += len(copy)
                else:
                    dropped.append(i)
        if dropped:  # the state above is consistent: the matching copies are kept
            raise ChunkError(
                f"chunk {dropped[0]}: held before the manifest, fails its hash; dropped "
                f"{len(dropped)} such cop{'y' if len(dropped) == 1 else 'ies'}"
            )

    def add_chunk(self, data: bytes | Chunk) -> None:
        chunk = data if isinstance(data, Chunk) else parse_chunk(data)
        index, piece = chunk.index, chunk.data
        self._claim(chunk.payload_sha256, "chunk")
        if self._manifest is None:
            copies = self._candidates.setdefault(index, [])
            if piece in copies:
                return  # a duplicate
            if self._held_bytes + len(piece) > limits.MAX_PAYLOAD_BYTES:
                raise ChunkError(f"chunk {index}: more than {limits.MAX_PAYLOAD_BYTES} bytes held")
            copies.append(piece)
            self._held_bytes += len(piece)
            return
        count = len(self._manifest.chunk_hashes)
        if not 0 <= index < count:
            raise ChunkError(f"chunk.index: {index} outside 0..{count - 1}")
        if _sha256(piece) != self._manifest.chunk_hashes[index]:
            raise ChunkError(f"chunk {index}: data fails its sha256 (truncated or corrupt)")
        if index in self._chunks:
            return  # a duplicate (verified against the manifest, so the same bytes)
        self._chunks[index] = piece
        self._held_bytes += len(piece)

    def held(self) -> int:
        """Chunk indices held so far (verified, or awaiting the manifest)."""
        return len(self._chunks) + len(self._candidates)

    def is_complete(self) -> bool:
        return self._manifest is not None and len(self._chunks) == len(self._manifest.chunk_hashes)

    def missing(self) -> list[int]:
        """Chunk indices still missing (empty until the manifest says how many there are)."""
        if self._manifest is None:
            return []
        return [i for i in range(len(self._manifest.chunk_hashes)) if i not in self._chunks]

    def payload(self) -> bytes:
        if self._manifest is None:
            raise ChunkError("manifest: not received yet")
        if not self.is_complete():
            raise ChunkError(f"chunks: missing {self.missing()[:8]}")
        data = b"".join(self._chunks[i] for i in range(len(self._manifest.chunk_hashes)))
        if len(data) != self._manifest.size:
            raise ChunkError(f"payload: {len(data)} bytes, manifest says {self._manifest.size}")
        if _sha256(data) != self._manifest.payload_sha256:
            raise ChunkError("payload: joined chunks fail the manifest's payload_sha256")
        return data
