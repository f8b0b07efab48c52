"""The task payload: fields, the canonical CBOR envelope, signing, and bounded decoding.

Wire format (FORMAT_VERSION 1), both levels canonical CBOR (RFC 8949 core deterministic encoding,
cbor2 `canonical=True`); decoding rejects anything that does not re-encode to the same bytes:

    envelope = {"format": 1, "body": bstr, "key_id": tstr, "signature": bstr(64)}   # signed
             | {"format": 1, "body": bstr}                                          # unsigned
    body     = {"format": 1, "task": tstr, "version": uint, "classes": [tstr],
                "corpus": {"fingerprint": tstr(64 hex), "size": uint},
                "selection": {"codec": tstr, "count": uint, "data": bstr},
                "provenance": {"builder_version", "strategy", "params", "accuracy_estimate",
                               "created_at", "expires_at", "note"},
                ? "view": {"version": 1, "ops": [...]}}     # optional, plada.views

A body without "view" is the body of every payload before views: it decodes exactly as before
(the device embeds the reference images as they are).

The signature covers the exact body bytes. Before cbor2 sees any bytes, a small scanner walks the
item headers and rejects tags, indefinite lengths, deep nesting, too many items and lengths past the
end of the input, so nothing is allocated or interpreted beyond the bounds in plada.limits.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plada import limits
from plada.codecs import check_selection, decode_selection, encode_selection
from plada.envelope import (
    FORMAT_VERSION,
    SignatureStatus,
    _expect_keys,
    _get,
    _load_body,
    _open_envelope,
    _require_signature,
    _seal,
    _signature_status,
    payload_digest,
)
from plada.errors import (
    PayloadCorpusError,
    PayloadDecodeError,
    PayloadExpiredError,
    PayloadLimitError,
    PayloadValueError,
)
from plada.signing import SIGNATURE_BYTES, SigningKey
from plada.views import View, view_from_obj

__all__ = [
    "FORMAT_VERSION",
    "CorpusRef",
    "PayloadInfo",
    "Provenance",
    "SignatureStatus",
    "TaskPayload",
    "check_corpus",
    "decode_payload",
    "encode_payload",
    "envelope_size",
    "inspect_payload",
    "payload_digest",
    "read_payload_file",
]

TASK_NAME_RE = re.compile(rf"[a-z0-9_-]{{1,{limits.MAX_TASK_NAME_CHARS}}}")
FINGERPRINT_RE = re.compile(r"[0-9a-f]{64}")
_MAX_INT = 2**63 - 1

ParamValue = str | int | float | bool


@dataclass(frozen=True)
class CorpusRef:
    fingerprint: str  # hex sha256 of the corpus manifest
    size: int  # N images


@dataclass(frozen=True)
class Provenance:
    builder_version: str
    strategy: str
    params: Mapping[str, ParamValue]
    accuracy_estimate: float | None  # builder's simulated device accuracy, 0..1
    created_at: int  # unix seconds
    expires_at: int | None = None
    note: str = ""


@dataclass(frozen=True)
class TaskPayload:
    task: str  # [a-z0-9_-]{1,64}
    version: int  # >= 1, only grows
    class_names: tuple[str, ...]
    corpus: CorpusRef
    indices: np.ndarray  # (k,) int64, sorted ascending, unique, < corpus.size
    labels: np.ndarray  # (k,) int64, < len(class_names), aligned with indices
    provenance: Provenance
    view: View | None = None  # how devices look at the kept reference images (plada.views)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        return [int(c) for c in np.bincount(self.labels, minlength=self.num_classes)]


@dataclass(frozen=True)
class PayloadInfo:
    """What `inspect_payload` learns, whether or not the signature holds."""

    payload: TaskPayload
    codec: str
    signature: SignatureStatus
    key_id: str | None
    bytes_total: int
    selection_bytes: int
    digest: str
    expired: bool = field(default=False)


def read_payload_file(path: Path, *, max_bytes: int = limits.MAX_PAYLOAD_BYTES) -> bytes:
    """A payload file's bytes; PayloadLimitError for a file over `max_bytes`, found without
    reading it whole (a 1 GiB file costs one read of max_bytes + 1). OSError if unreadable."""
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadLimitError(f"payload: {path} is over the bound of {max_bytes} bytes")
    return data


def check_corpus(payload: TaskPayload, *, fingerprint: str, size: int) -> None:
    """Raise PayloadCorpusError unless the payload refers to this corpus (fingerprint and size)."""
    if payload.corpus.fingerprint != fingerprint:
        raise PayloadCorpusError(
            f"corpus.fingerprint: payload wants {payload.corpus.fingerprint[:16]}..., "
            f"this corpus is {fingerprint[:16]}..."
        )
    if payload.corpus.size != size:
        raise PayloadCorpusError(
            f"corpus.size: payload wants {payload.corpus.size} images, this corpus has {size}"
        )


# ---------------------------------------------------------------- encoding


def _check_text(value: object, name: str, *, max_bytes: int, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise PayloadValueError(f"{name}: expected a string, got {type(value).__name__}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise PayloadValueError(f"{name}: not valid UTF-8 ({exc.reason})") from exc
    if size > max_bytes:
        raise PayloadLimitError(f"{name}: {size} bytes of UTF-8, the bound is {max_bytes}")
    if not allow_empty and not value:
        raise PayloadValueError(f"{name}: must not be empty")
    return value


def _check_int(value: object, name: str, *, low: int, high: int = _MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise PayloadValueError(f"{name}: expected an integer, got {type(value).__name__}")
    number = int(value)
    if not low <= number <= high:
        raise PayloadValueError(f"{name}: {number} is outside {low}..{high}")
    return number


def _plain(value: object) -> object:
    """NumPy scalars (np.float32 accuracies, np.int64 seeds) become the Python values CBOR takes."""
    if isinstance(value, np.generic):
        plain: object = value.item()
        return plain
    return value


def _check_header(payload: TaskPayload) -> None:
    """Every field except the selection arrays; shared by encode and decode."""
    if not isinstance(payload.task, str) or not TASK_NAME_RE.fullmatch(payload.task):
        raise PayloadValueError(f"task: {payload.task!r} does not match [a-z0-9_-]{{1,64}}")
    _check_int(payload.version, "version", low=1)
    if not 1 <= len(payload.class_names) <= limits.MAX_CLASSES:
        raise PayloadLimitError(
            f"classes: {len(payload.class_names)} classes, allowed 1..{limits.MAX_CLASSES}"
        )
    for i, name in enumerate(payload.class_names):
        _check_text(name, f"classes[{i}]", max_bytes=limits.MAX_CLASS_NAME_BYTES, allow_empty=False)
    if len(set(payload.class_names)) != len(payload.class_names):
        raise PayloadValueError("classes: class names must be unique")
    fp = payload.corpus.fingerprint
    if not isinstance(fp, str) or not FINGERPRINT_RE.fullmatch(fp):
        raise PayloadValueError(f"corpus.fingerprint: {fp!r} is not 64 lowercase hex digits")
    _check_int(payload.corpus.size, "corpus.size", low=1, high=limits.MAX_CORPUS_SIZE)
    prov = payload.provenance
    _check_text(
        prov.builder_version, "provenance.builder_version", max_bytes=limits.MAX_SHORT_STRING_BYTES
    )
    _check_text(prov.strategy, "provenance.strategy", max_bytes=limits.MAX_SHORT_STRING_BYTES)
    _check_text(prov.note, "provenance.note", max_bytes=limits.MAX_NOTE_BYTES)
    if not isinstance(prov.params, Mapping):
        raise PayloadValueError("provenance.params: expected a mapping")
    if len(prov.params) > limits.MAX_PARAMS:
        raise PayloadLimitError(
            f"provenance.params: {len(prov.params)} entries, bound {limits.MAX_PARAMS}"
        )
    for key, raw in prov.params.items():
        value = _plain(raw)
        _check_text(
            key, "provenance.params key", max_bytes=limits.MAX_SHORT_STRING_BYTES, allow_empty=False
        )
        where = f"provenance.params[{key!r}]"
        if isinstance(value, bool):
            continue
        if isinstance(value, str):
            _check_text(value, where, max_bytes=limits.MAX_PARAM_STRING_BYTES)
        elif isinstance(value, int):
            _check_int(value, where, low=-_MAX_INT)
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise PayloadValueError(f"{where}: {value} is not finite")
        else:
            raise PayloadValueError(
                f"{where}: {type(value).__name__} is not str, int, float or bool"
            )
    acc = _plain(prov.accuracy_estimate)
    if acc is not None:
        if isinstance(acc, bool) or not isinstance(acc, int | float) or not 0.0 <= acc <= 1.0:
            raise PayloadValueError(
                f"provenance.accuracy_estimate: {acc!r} is not a number in 0..1"
            )
    _check_int(prov.created_at, "provenance.created_at", low=0)
    if prov.expires_at is not None:
        _check_int(prov.expires_at, "provenance.expires_at", low=0)
    if payload.view is not None:
        if not isinstance(payload.view, View):
            raise PayloadValueError(f"view: expected a View, got {type(payload.view).__name__}")
        view_from_obj(payload.view.to_obj())  # every op and bound, as a device will check them


def _body_dict(payload: TaskPayload, codec: str, data: bytes) -> dict[str, Any]:
    prov = payload.provenance
    body = {
        "format": FORMAT_VERSION,
        "task": payload.task,
        "version": int(payload.version),
        "classes": list(payload.class_names),
        "corpus": {"fingerprint": payload.corpus.fingerprint, "size": int(payload.corpus.size)},
        "selection": {"codec": codec, "count": len(payload.indices), "data": data},
        "provenance": {
            "builder_version": prov.builder_version,
            "strategy": prov.strategy,
            "params": {str(k): _plain(v) for k, v in prov.params.items()},
            "accuracy_estimate": None
            if prov.accuracy_estimate is None
            else float(prov.accuracy_estimate),
            "created_at": int(prov.created_at),
            "expires_at": None if prov.expires_at is None else int(prov.expires_at),
            "note": prov.note,
        },
    }
    if payload.view is not None:  # absent, not null: a payload without a view is unchanged
        body["view"] = payload.view.to_obj()
    return body


def encode_payload(
    payload: TaskPayload,
    *,
    signing_key: SigningKey | None,
    codecs: Sequence[str] | None = None,
) -> bytes:
    """Canonical CBOR envelope of `payload`, signed with `signing_key` unless it is None.

    The selection is encoded with every codec in `codecs` (default: all) and the smallest is kept.
    Raises PayloadValueError / PayloadLimitError naming the field if the payload is out of bounds.
    """
    codec, data = _encode_checked_selection(payload, codecs)
    out = _seal(cbor2.dumps(_body_dict(payload, codec, data), canonical=True), signing_key)
    if len(out) > limits.MAX_PAYLOAD_BYTES:
        raise PayloadLimitError(
            f"payload: {len(out)} bytes, over the decode bound {limits.MAX_PAYLOAD_BYTES}"
        )
    return out


def envelope_size(payload: TaskPayload, *, codec: str, data: bytes, key_id: str | None) -> int:
    """len(encode_payload(...)) for a selection already encoded as `data` by `codec`, signed by
    the key `key_id` (None: unsigned), without signing: an Ed25519 signature is always
    SIGNATURE_BYTES long. The builder's byte search sizes candidate selections with it."""
    body = cbor2.dumps(_body_dict(payload, codec, data), canonical=True)
    envelope: dict[str, Any] = {"format": FORMAT_VERSION, "body": body}
    if key_id is not None:
        envelope["key_id"] = key_id
        envelope["signature"] = bytes(SIGNATURE_BYTES)
    return len(cbor2.dumps(envelope, canonical=True))


def _encode_checked_selection(
    payload: TaskPayload, codecs: Sequence[str] | None
) -> tuple[str, bytes]:
    _check_header(payload)
    indices = np.asarray(payload.indices)
    labels = np.asarray(payload.labels)
    if len(indices) > limits.MAX_INDICES:
        raise PayloadLimitError(
            f"selection.count: {len(indices)} indices, bound {limits.MAX_INDICES}"
        )
    check_selection(indices, labels, n=payload.corpus.size, num_classes=payload.num_classes)
    return encode_selection(
        indices, labels, n=payload.corpus.size, num_classes=payload.num_classes, codecs=codecs
    )


# ---------------------------------------------------------------- decoding


def _decode_body(body: bytes) -> tuple[TaskPayload, str, int]:
    """(payload, codec name, selection bytes) from body bytes; every field checked and bounded."""
    # Field by field in wire order, each bound checked before the next is read: longer than 60
    # lines because splitting it would scatter the wire format the module docstring draws.
    obj = _load_body(
        body, {"format", "task", "version", "classes", "corpus", "selection", "provenance", "view"}
    )
    task = _get(obj, "task", str, where="")
    version = _get(obj, "version", int, where="")
    classes = _get(obj, "classes", list, where="")
    if not all(isinstance(name, str) for name in classes):
        raise PayloadDecodeError("classes: every class name must be a string")
    corpus = _get(obj, "corpus", dict, where="")
    _expect_keys(corpus, {"fingerprint", "size"}, where="corpus.")
    selection = _get(obj, "selection", dict, where="")
    _expect_keys(selection, {"codec", "count", "data"}, where="selection.")
    prov = _get(obj, "provenance", dict, where="")
    _expect_keys(
        prov,
        {
            "builder_version",
            "strategy",
            "params",
            "accuracy_estimate",
            "created_at",
            "expires_at",
            "note",
        },
        where="provenance.",
    )
    accuracy = _get(prov, "accuracy_estimate", (float, int, type(None)), where="provenance.")
    view = view_from_obj(obj["view"]) if "view" in obj else None
    header = TaskPayload(
        task=task,
        version=version,
        class_names=tuple(classes),
        corpus=CorpusRef(
            fingerprint=_get(corpus, "fingerprint", str, where="corpus."),
            size=_get(corpus, "size", int, where="corpus."),
        ),
        indices=np.zeros(0, dtype=np.int64),
        labels=np.zeros(0, dtype=np.int64),
        provenance=Provenance(
            builder_version=_get(prov, "builder_version", str, where="provenance."),
            strategy=_get(prov, "strategy", str, where="provenance."),
            params=dict(_get(prov, "params", dict, where="provenance.")),
            accuracy_estimate=None if accuracy is None else float(accuracy),
            created_at=_get(prov, "created_at", int, where="provenance."),
            expires_at=_get(prov, "expires_at", (int, type(None)), where="provenance."),
            note=_get(prov, "note", str, where="provenance."),
        ),
        view=view,
    )
    _check_header(header)
    codec = _get(selection, "codec", str, where="selection.")
    count = _get(selection, "count", int, where="selection.")
    data = _get(selection, "data", bytes, where="selection.")
    if not 0 <= count <= min(limits.MAX_INDICES, header.corpus.size):
        raise PayloadLimitError(
            f"selection.count: {count} outside 0..{min(limits.MAX_INDICES, header.corpus.size)}"
        )
    indices, labels = decode_selection(
        codec, data, n=header.corpus.size, num_classes=header.num_classes, k=count
    )
    indices.setflags(write=False)
    labels.setflags(write=False)
    payload = TaskPayload(
        task=header.task,
        version=header.version,
        class_names=header.class_names,
        corpus=header.corpus,
        indices=indices,
        labels=labels,
        provenance=header.provenance,
        view=header.view,
    )
    return payload, codec, len(data)


def _is_expired(payload: TaskPayload, now: float) -> bool:
    expires = payload.provenance.expires_at
    return expires is not None and now >= expires


def decode_payload(
    data: bytes,
    *,
    trusted_keys: Mapping[str, Ed25519PublicKey],
    allow_unsigned: bool = False,
    now: float | None = None,
) -> TaskPayload:
    """Verify and decode an envelope; any problem raises a PayloadError subclass naming the field.

    A payload signed by a key in `trusted_keys` must verify. Unsigned payloads, and payloads signed
    by a key that is not trusted (whose signature vouches for nothing here), are accepted only with
    allow_unsigned=True. A bad signature under a trusted key id is always rejected. The signature
    is checked before the body is parsed.
    """
    env = _open_envelope(data)
    _require_signature(
        env,
        trusted_keys,
        allow_unsigned=allow_unsigned,
        unsigned="payload is unsigned and unsigned payloads are not allowed",
    )
    payload, _, _ = _decode_body(env.body)
    current = time.time() if now is None else now
    if _is_expired(payload, current):
        raise PayloadExpiredError(
            f"provenance.expires_at: payload expired at {payload.provenance.expires_at} "
            f"(now {int(current)})"
        )
    return payload


def inspect_payload(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey], now: float | None = None
) -> PayloadInfo:
    """Decode whatever the signature says, and report the signature status instead of raising on it.

    For tools, never for devices: a device must use decode_payload. Raises PayloadError only when
    the bytes themselves cannot be decoded.
    """
    env = _open_envelope(data)
    status = _signature_status(env, trusted_keys)
    payload, codec, selection_bytes = _decode_body(env.body)
    current = time.time() if now is None else now
    return PayloadInfo(
        payload=payload,
        codec=codec,
        signature=status,
        key_id=env.key_id,
        bytes_total=len(data),
        selection_bytes=selection_bytes,
        digest=payload_digest(bytes(data)),
        expired=_is_expired(payload, current),
    )
