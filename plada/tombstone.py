"""A task's retirement: a signed tombstone naming the task and the version it retires.

Wire format (FORMAT_VERSION 1), the same signed envelope as a task payload (plada.payload), both
levels canonical CBOR; only the body differs, so neither decoder accepts the other's body (the
payload decoder refuses the unknown field ``retire``, this one the payload's fields), and a
signature over a payload can never be replayed as a retirement:

    envelope = {"format": 1, "body": bstr, "key_id": tstr, "signature": bstr(64)}
    body     = {"format": 1, "retire": tstr (task), "version": uint, "created_at": uint,
                "note": tstr}

A device verifies it exactly like a payload (decode_tombstone: unsigned, unknown key or a bad
signature raise PayloadSignatureError), then removes every head of the task up to ``version``
and keeps the task's record; it never installs those versions again. A newer version teaches the
task anew. The builder publishes it retained on ``<base>/group/<group>/tasks/<task>/retired``
(plada.topics) and clears the task's retained payload.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plada import limits
from plada.envelope import (
    FORMAT_VERSION,
    SignatureStatus,
    _get,
    _load_body,
    _seal,
    _seen,
    _SmallMessage,
    _verified_body,
)
from plada.errors import PayloadDecodeError, PayloadLimitError
from plada.payload import (
    TASK_NAME_RE,
)
from plada.signing import SigningKey

__all__ = [
    "MAX_TOMBSTONE_BYTES",
    "Tombstone",
    "TombstoneInfo",
    "decode_tombstone",
    "encode_tombstone",
    "inspect_tombstone",
    "make_tombstone",
]

MAX_TOMBSTONE_BYTES = 4096  # a tombstone is a few hundred bytes; anything bigger is not one
_MAX_INT = 2**63 - 1
_KIND = _SmallMessage(what="tombstone", unsigned="retirement", bound=MAX_TOMBSTONE_BYTES)


@dataclass(frozen=True)
class Tombstone:
    task: str  # [a-z0-9_-]{1,64}
    version: int  # versions up to this one are retired
    created_at: int  # unix seconds
    note: str = ""


@dataclass(frozen=True)
class TombstoneInfo:
    """What `inspect_tombstone` learns, whether or not the signature holds (tools only)."""

    tombstone: Tombstone
    signature: SignatureStatus
    key_id: str | None
    digest: str


def _body(tombstone: Tombstone) -> bytes:
    if not TASK_NAME_RE.fullmatch(tombstone.task):
        raise PayloadDecodeError(f"retire: task name {tombstone.task!r} is not [a-z0-9_-]{{1,64}}")
    if not 1 <= tombstone.version <= _MAX_INT:
        raise PayloadDecodeError(f"version: {tombstone.version} outside 1..{_MAX_INT}")
    if len(tombstone.note.encode("utf-8")) > limits.MAX_SHORT_STRING_BYTES:
        raise PayloadLimitError(f"note: longer than {limits.MAX_SHORT_STRING_BYTES} bytes")
    body: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "retire": tombstone.task,
        "version": tombstone.version,
        "created_at": tombstone.created_at,
        "note": tombstone.note,
    }
    return cbor2.dumps(body, canonical=True)


def encode_tombstone(tombstone: Tombstone, *, signing_key: SigningKey | None) -> bytes:
    """Canonical CBOR envelope of `tombstone`, signed unless `signing_key` is None (tests)."""
    body = _body(tombstone)
    return _seal(body, signing_key)


def _decode_body(body: bytes) -> Tombstone:
    obj = _load_body(body, {"format", "retire", "version", "created_at", "note"})
    task = _get(obj, "retire", str, where="")
    version = _get(obj, "version", int, where="")
    created_at = _get(obj, "created_at", int, where="")
    note = _get(obj, "note", str, where="")
    if not TASK_NAME_RE.fullmatch(task):
        raise PayloadDecodeError(f"retire: task name {task!r} is not [a-z0-9_-]{{1,64}}")
    if not 1 <= version <= _MAX_INT:
        raise PayloadDecodeError(f"version: {version} outside 1..{_MAX_INT}")
    if not 0 <= created_at <= _MAX_INT:
        raise PayloadDecodeError(f"created_at: {created_at} out of range")
    if len(note.encode("utf-8")) > limits.MAX_SHORT_STRING_BYTES:
        raise PayloadLimitError(f"note: longer than {limits.MAX_SHORT_STRING_BYTES} bytes")
    return Tombstone(task=task, version=version, created_at=created_at, note=note)


def decode_tombstone(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey], allow_unsigned: bool = False
) -> Tombstone:
    """Verify and decode a tombstone, exactly as decode_payload verifies a payload: a
    PayloadError subclass names what is wrong. The signature is checked before the body is read."""
    return _decode_body(_verified_body(data, _KIND, trusted_keys, allow_unsigned=allow_unsigned))


def inspect_tombstone(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey]
) -> TombstoneInfo:
    """Decode whatever the signature says and report its status (tools, never devices)."""
    seen = _seen(data, _KIND, trusted_keys)
    return TombstoneInfo(
        tombstone=_decode_body(seen.body),
        signature=seen.signature,
        key_id=seen.key_id,
        digest=seen.digest,
    )


def make_tombstone(task: str, version: int, *, note: str = "") -> Tombstone:
    """A tombstone created now."""
    return Tombstone(task=task, version=version, created_at=int(time.time()), note=note)
