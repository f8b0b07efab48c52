"""A task version's revocation: a signed order to undo one published payload.

What a staged rollout sends when its canary fails (builder.fleet.rollout). Wire format
(FORMAT_VERSION 1), the same signed envelope as a task payload and a retirement (plada.payload,
plada.tombstone), both levels canonical CBOR; only the body differs, so no decoder accepts
another's body (each refuses the others' fields) and a signature over one can never be replayed
as another:

    envelope = {"format": 1, "body": bstr, "key_id": tstr, "signature": bstr(64)}
    body     = {"format": 1, "revoke": tstr (task), "version": uint,
                "payload": tstr (sha256 hex of the revoked payload envelope),
                "created_at": uint, "note": tstr}

It names the payload by its digest, not only the version: a version names one payload, and the
digest is what the device's rollback marks already refuse on redelivery (agent.versions). A
device verifies it exactly like a payload (decode_revocation: unsigned, unknown key or a bad
signature raise PayloadSignatureError), then, if that payload is installed, rolls the task back to
the head it served before (or to none), and in every case marks the payload rolled back, so it is
never installed afterwards (a late device that has not received it yet refuses it too). A newer
version is unaffected. The builder publishes it retained on
``<base>/group/<group>/tasks/<task>/revoked`` (plada.topics).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

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
    "MAX_REVOCATION_BYTES",
    "Revocation",
    "RevocationInfo",
    "decode_revocation",
    "encode_revocation",
    "inspect_revocation",
    "make_revocation",
]

MAX_REVOCATION_BYTES = 4096  # a revocation is a few hundred bytes; anything bigger is not one
_MAX_INT = 2**63 - 1
_DIGEST_CHARS = 64
_FIELDS = {"format", "revoke", "version", "payload", "created_at", "note"}
_KIND = _SmallMessage(what="revocation", unsigned="revocation", bound=MAX_REVOCATION_BYTES)


@dataclass(frozen=True)
class Revocation:
    task: str  # [a-z0-9_-]{1,64}
    version: int  # the revoked version
    payload_id: str  # sha256 hex of the revoked payload envelope (plada.payload.payload_digest)
    created_at: int  # unix seconds
    note: str = ""


@dataclass(frozen=True)
class RevocationInfo:
    """What `inspect_revocation` learns, whether or not the signature holds (tools only)."""

    revocation: Revocation
    signature: SignatureStatus
    key_id: str | None
    digest: str


def _check(revocation: Revocation) -> None:
    if not TASK_NAME_RE.fullmatch(revocation.task):
        raise PayloadDecodeError(f"revoke: task name {revocation.task!r} is not [a-z0-9_-]{{1,64}}")
    if not 1 <= revocation.version <= _MAX_INT:
        raise PayloadDecodeError(f"version: {revocation.version} outside 1..{_MAX_INT}")
    digest = revocation.payload_id
    if len(digest) != _DIGEST_CHARS or any(c not in "0123456789abcdef" for c in digest):
        raise PayloadDecodeError(f"payload: {digest!r} is not a sha256 hex digest")
    if not 0 <= revocation.created_at <= _MAX_INT:
        raise PayloadDecodeError(f"created_at: {revocation.created_at} out of range")
    if len(revocation.note.encode("utf-8")) > limits.MAX_SHORT_STRING_BYTES:
        raise PayloadLimitError(f"note: longer than {limits.MAX_SHORT_STRING_BYTES} bytes")


def encode_revocation(revocation: Revocation, *, signing_key: SigningKey | None) -> bytes:
    """Canonical CBOR envelope of `revocation`, signed unless `signing_key` is None (tests)."""
    _check(revocation)
    body = cbor2.dumps(
        {
            "format": FORMAT_VERSION,
            "revoke": revocation.task,
            "version": revocation.version,
            "payload": revocation.payload_id,
            "created_at": revocation.created_at,
            "note": revocation.note,
        },
        canonical=True,
    )
    return _seal(body, signing_key)


def _decode_body(body: bytes) -> Revocation:
    obj = _load_body(body, _FIELDS)
    revocation = Revocation(
        task=_get(obj, "revoke", str, where=""),
        version=_get(obj, "version", int, where=""),
        payload_id=_get(obj, "payload", str, where=""),
        created_at=_get(obj, "created_at", int, where=""),
        note=_get(obj, "note", str, where=""),
    )
    _check(revocation)
    return revocation


def decode_revocation(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey], allow_unsigned: bool = False
) -> Revocation:
    """Verify and decode a revocation, exactly as decode_payload verifies a payload: a
    PayloadError subclass names what is wrong. The signature is checked before the body is read."""
    return _decode_body(_verified_body(data, _KIND, trusted_keys, allow_unsigned=allow_unsigned))


def inspect_revocation(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey]
) -> RevocationInfo:
    """Decode whatever the signature says and report its status (tools, never devices)."""
    seen = _seen(data, _KIND, trusted_keys)
    return RevocationInfo(
        revocation=_decode_body(seen.body),
        signature=seen.signature,
        key_id=seen.key_id,
        digest=seen.digest,
    )


def make_revocation(task: str, version: int, payload_id: str, *, note: str = "") -> Revocation:
    """A revocation created now."""
    return Revocation(
        task=task,
        version=version,
        payload_id=payload_id,
        created_at=int(time.time()),
        note=note,
    )
