"""The signed envelope every PLADA wire message shares (task payloads, tombstones, revocations):
``{format, body, key_id?, signature?}`` in canonical CBOR, the body signed with Ed25519. Sealing,
opening with a size bound, the signature policy, and the bounded CBOR map readers the bodies use.
Its own module so the three message kinds cannot drift apart in how they are opened and checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plada import limits
from plada.errors import PayloadDecodeError, PayloadLimitError, PayloadSignatureError
from plada.signing import SIGNATURE_BYTES, SigningKey, sign, verify

FORMAT_VERSION = 1
SignatureStatus = Literal["valid", "invalid", "unsigned", "unknown-key"]


def payload_digest(data: bytes) -> str:
    """Hex sha256 of the envelope bytes: the payload id."""
    return hashlib.sha256(data).hexdigest()


def _seal(body: bytes, signing_key: SigningKey | None) -> bytes:
    """The one signed envelope around an encoded body (payloads, tombstones, revocations), so
    the three wire formats cannot drift apart: signed unless `signing_key` is None (tests)."""
    envelope: dict[str, Any] = {"format": FORMAT_VERSION, "body": body}
    if signing_key is not None:
        envelope["key_id"] = signing_key.key_id
        envelope["signature"] = sign(body, signing_key)
    return cbor2.dumps(envelope, canonical=True)


def _load_map(data: bytes, *, where: str) -> dict[str, Any]:
    limits.scan_cbor(data, where=where, error=PayloadDecodeError, limit_error=PayloadLimitError)
    try:
        obj = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise PayloadDecodeError(f"{where}: not valid CBOR ({exc})") from exc
    if not isinstance(obj, dict):
        raise PayloadDecodeError(f"{where}: expected a CBOR map, got {type(obj).__name__}")
    try:
        canonical = cbor2.dumps(obj, canonical=True)
    except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:  # pragma: no cover - defensive
        raise PayloadDecodeError(f"{where}: cannot re-encode ({exc})") from exc
    if canonical != data:
        raise PayloadDecodeError(f"{where}: not canonical CBOR (or duplicate map keys)")
    return obj


def _get(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], *, where: str) -> Any:
    if key not in obj:
        raise PayloadDecodeError(f"{where}{key}: missing")
    value = obj[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise PayloadDecodeError(f"{where}{key}: expected {kinds[0].__name__}, got bool")
    if not isinstance(value, kinds):
        raise PayloadDecodeError(
            f"{where}{key}: expected {kinds[0].__name__}, got {type(value).__name__}"
        )
    return value


def _expect_keys(obj: Mapping[str, Any], keys: set[str], *, where: str) -> None:
    extra = set(map(str, obj)) - keys
    if extra:
        raise PayloadDecodeError(f"{where or 'body.'}{sorted(extra)[0]}: unknown field")


@dataclass(frozen=True)
class _Envelope:
    body: bytes
    key_id: str | None
    signature: bytes | None


def _open_envelope(data: bytes) -> _Envelope:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise PayloadDecodeError(f"payload: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > limits.MAX_PAYLOAD_BYTES:
        raise PayloadLimitError(f"payload: {len(data)} bytes, bound {limits.MAX_PAYLOAD_BYTES}")
    env = _load_map(data, where="envelope")
    _expect_keys(env, {"format", "body", "key_id", "signature"}, where="envelope.")
    fmt = _get(env, "format", int, where="envelope.")
    if fmt != FORMAT_VERSION:
        raise PayloadDecodeError(
            f"envelope.format: version {fmt}, this build reads {FORMAT_VERSION}"
        )
    body = _get(env, "body", bytes, where="envelope.")
    if ("key_id" in env) != ("signature" in env):
        raise PayloadDecodeError("envelope.signature: key_id and signature must come together")
    if "signature" not in env:
        return _Envelope(body=body, key_id=None, signature=None)
    kid = _get(env, "key_id", str, where="envelope.")
    if len(kid) > limits.MAX_SHORT_STRING_BYTES:
        raise PayloadLimitError(f"envelope.key_id: longer than {limits.MAX_SHORT_STRING_BYTES}")
    signature = _get(env, "signature", bytes, where="envelope.")
    if len(signature) != SIGNATURE_BYTES:
        raise PayloadDecodeError(
            f"envelope.signature: {len(signature)} bytes, expected {SIGNATURE_BYTES}"
        )
    return _Envelope(body=body, key_id=kid, signature=signature)


def _open_bounded(data: bytes, *, bound: int, what: str) -> _Envelope:
    """`_open_envelope` under a message's own size bound, far below a payload's: a tombstone or
    revocation is a few hundred bytes, so anything bigger is refused before it is parsed."""
    if len(data) > bound:
        raise PayloadLimitError(f"{what}: {len(data)} bytes, bound {bound}")
    return _open_envelope(data)


def _load_body(body: bytes, fields: set[str]) -> dict[str, Any]:
    """A body map with only `fields` and this build's format, the first check every decoder makes
    (so no decoder accepts another message's body)."""
    obj = _load_map(body, where="body")
    _expect_keys(obj, fields, where="")
    fmt = _get(obj, "format", int, where="body.")
    if fmt != FORMAT_VERSION:
        raise PayloadDecodeError(f"body.format: version {fmt}, this build reads {FORMAT_VERSION}")
    return obj


def _require_signature(
    env: _Envelope,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    *,
    allow_unsigned: bool,
    unsigned: str,
) -> None:
    """The one signature policy of every signed envelope (payloads, tombstones, revocations): a bad
    signature under a trusted key is always refused; unsigned or untrusted only when allowed."""
    status = _signature_status(env, trusted_keys)
    if status == "unsigned" and not allow_unsigned:
        raise PayloadSignatureError(f"signature: {unsigned}")
    if status == "unknown-key" and not allow_unsigned:
        raise PayloadSignatureError(f"key_id: {env.key_id!r} is not among the trusted keys")
    if status == "invalid":
        raise PayloadSignatureError(f"signature: does not verify with key {env.key_id}")


def _signature_status(
    env: _Envelope, trusted_keys: Mapping[str, Ed25519PublicKey]
) -> SignatureStatus:
    if env.signature is None or env.key_id is None:
        return "unsigned"
    if env.key_id not in trusted_keys:
        return "unknown-key"
    try:
        verify(env.body, env.signature, env.key_id, trusted_keys)
    except PayloadSignatureError:
        return "invalid"
    return "valid"


@dataclass(frozen=True)
class _SmallMessage:
    """A small signed message beside payloads (tombstone, revocation): its own size bound and
    how errors name it, so its decode and inspect are the same steps as every other's."""

    what: str  # names it in the size error ("tombstone")
    unsigned: str  # names it in the unsigned error ("retirement")
    bound: int  # bytes


@dataclass(frozen=True)
class _Seen:
    """What an inspect learns of a small message's envelope, whether or not the signature holds."""

    body: bytes
    signature: SignatureStatus
    key_id: str | None
    digest: str


def _verified_body(
    data: bytes,
    kind: _SmallMessage,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    *,
    allow_unsigned: bool,
) -> bytes:
    """The body of a small message once its signature holds (checked before the body is read)."""
    env = _open_bounded(data, bound=kind.bound, what=kind.what)
    _require_signature(
        env,
        trusted_keys,
        allow_unsigned=allow_unsigned,
        unsigned=f"{kind.unsigned} is unsigned and unsigned messages are not allowed",
    )
    return env.body


def _seen(data: bytes, kind: _SmallMessage, trusted_keys: Mapping[str, Ed25519PublicKey]) -> _Seen:
    """A small message's body and signature status, never raising on the signature (tools)."""
    env = _open_bounded(data, bound=kind.bound, what=kind.what)
    return _Seen(
        body=env.body,
        signature=_signature_status(env, trusted_keys),
        key_id=env.key_id,
        digest=payload_digest(bytes(data)),
    )
