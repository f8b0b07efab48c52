"""Envelope, signature and field checks of plada.payload."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cbor2
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plada.codecs import CODECS, encode_selection
from plada.errors import (
    PayloadCorpusError,
    PayloadDecodeError,
    PayloadError,
    PayloadExpiredError,
    PayloadLimitError,
    PayloadSignatureError,
    PayloadValueError,
)
from plada.payload import (
    check_corpus,
    decode_payload,
    encode_payload,
    envelope_size,
    inspect_payload,
    payload_digest,
)
from plada.signing import SigningKey, generate_keypair, load_private_key, load_trusted_keys
from tests.unit.plada.payload_helpers import FINGERPRINT, make_payload

Keys = tuple[SigningKey, dict[str, Ed25519PublicKey]]


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    private, public = generate_keypair(tmp_path / "keys")
    return load_private_key(private), load_trusted_keys([public])


def _reencode(data: bytes, edit: dict[str, object], *, where: str = "body") -> bytes:
    """Rewrite one body field and re-wrap it unsigned (to reach the body checks)."""
    env = cbor2.loads(data)
    body = cbor2.loads(env["body"])
    body.update(edit)
    return cbor2.dumps({"format": 1, "body": cbor2.dumps(body, canonical=True)}, canonical=True)


def test_encode_payload_round_trips_signed(keys: Keys) -> None:
    # Prepare
    key, trusted = keys
    payload = make_payload(k=80, num_classes=4)
    # Execute
    decoded = decode_payload(encode_payload(payload, signing_key=key), trusted_keys=trusted)
    # Assert
    np.testing.assert_array_equal(decoded.indices, payload.indices)
    np.testing.assert_array_equal(decoded.labels, payload.labels)
    assert decoded.indices.dtype == np.int64 and decoded.labels.dtype == np.int64
    assert dataclasses.replace(decoded, indices=payload.indices, labels=payload.labels) == payload


def test_encode_payload_is_deterministic(keys: Keys) -> None:
    key, _ = keys
    payload = make_payload()
    assert encode_payload(payload, signing_key=key) == encode_payload(payload, signing_key=key)


def test_encode_payload_round_trips_empty_selection() -> None:
    payload = make_payload(k=0)
    decoded = decode_payload(
        encode_payload(payload, signing_key=None), trusted_keys={}, allow_unsigned=True
    )
    assert len(decoded.indices) == 0


def test_decode_payload_rejects_tampered_body(keys: Keys) -> None:
    # Prepare
    key, trusted = keys
    env = cbor2.loads(encode_payload(make_payload(), signing_key=key))
    body = bytearray(env["body"])
    body[body.index(b"digits")] = ord("D")
    env["body"] = bytes(body)
    # Execute / Assert
    with pytest.raises(PayloadSignatureError, match="signature"):
        decode_payload(cbor2.dumps(env, canonical=True), trusted_keys=trusted)


def test_decode_payload_rejects_wrong_key(tmp_path: Path, keys: Keys) -> None:
    key, _ = keys
    _, other_public = generate_keypair(tmp_path / "other")
    data = encode_payload(make_payload(), signing_key=key)
    with pytest.raises(PayloadSignatureError, match="key_id"):
        decode_payload(data, trusted_keys=load_trusted_keys([other_public]))


def test_decode_payload_rejects_signature_from_substituted_key(
    keys: Keys,
) -> None:
    # A valid key id with someone else's signature bytes
    key, trusted = keys
    env = cbor2.loads(encode_payload(make_payload(), signing_key=key))
    env["signature"] = bytes(64)
    with pytest.raises(PayloadSignatureError, match="does not verify"):
        decode_payload(cbor2.dumps(env, canonical=True), trusted_keys=trusted)


def test_decode_payload_rejects_unsigned_by_default(keys: Keys) -> None:
    _, trusted = keys
    data = encode_payload(make_payload(), signing_key=None)
    with pytest.raises(PayloadSignatureError, match="unsigned"):
        decode_payload(data, trusted_keys=trusted)
    assert decode_payload(data, trusted_keys=trusted, allow_unsigned=True).task == "digits"


def test_decode_payload_treats_unknown_key_as_unsigned(keys: Keys) -> None:
    # Prepare
    key, _ = keys
    data = encode_payload(make_payload(), signing_key=key)
    # Execute / Assert: rejected by default, accepted only where unsigned payloads are
    with pytest.raises(PayloadSignatureError, match="key_id"):
        decode_payload(data, trusted_keys={})
    assert decode_payload(data, trusted_keys={}, allow_unsigned=True).task == "digits"


def test_decode_payload_rejects_invalid_signature_even_when_unsigned_allowed(keys: Keys) -> None:
    key, trusted = keys
    env = cbor2.loads(encode_payload(make_payload(), signing_key=key))
    env["signature"] = bytes(64)
    with pytest.raises(PayloadSignatureError, match="does not verify"):
        decode_payload(cbor2.dumps(env, canonical=True), trusted_keys=trusted, allow_unsigned=True)


def test_decode_payload_rejects_expired() -> None:
    data = encode_payload(make_payload(expires_at=1_800_000_000), signing_key=None)
    decode_payload(data, trusted_keys={}, allow_unsigned=True, now=1_799_999_999)
    with pytest.raises(PayloadExpiredError, match="expires_at"):
        decode_payload(data, trusted_keys={}, allow_unsigned=True, now=1_800_000_000)


def test_decode_payload_rejects_out_of_range_index() -> None:
    # Prepare: a selection coded for a larger corpus, then the corpus size shrunk
    data = encode_payload(make_payload(n=1000, k=50), signing_key=None, codecs=["paper"])
    body = cbor2.loads(cbor2.loads(data)["body"])
    top = int(make_payload(n=1000, k=50).indices[-1])
    bad = _reencode(data, {"corpus": {"fingerprint": FINGERPRINT, "size": top}})
    # Execute / Assert
    with pytest.raises(PayloadValueError, match=r"selection\.indices\[49\].*out of range"):
        decode_payload(bad, trusted_keys={}, allow_unsigned=True)
    assert body["corpus"]["size"] == 1000


def test_decode_payload_rejects_out_of_range_label() -> None:
    payload = make_payload(num_classes=3)
    data = encode_payload(payload, signing_key=None, codecs=["paper"])
    bad = _reencode(data, {"classes": ["a", "b"]})
    with pytest.raises(PayloadValueError, match=r"selection\.labels\[\d+\] = 2 is out of range"):
        decode_payload(bad, trusted_keys={}, allow_unsigned=True)


def test_encode_payload_rejects_bad_selection() -> None:
    payload = make_payload(n=100, k=10)
    dup = payload.indices.copy()
    dup[3] = dup[2]
    with pytest.raises(PayloadValueError, match="duplicate"):
        encode_payload(dataclasses.replace(payload, indices=dup), signing_key=None)
    with pytest.raises(PayloadValueError, match="labels"):
        encode_payload(dataclasses.replace(payload, labels=payload.labels + 5), signing_key=None)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"task": "Bad Name"}, "task"),
        ({"version": 0}, "version"),
        ({"class_names": ()}, "classes"),
        ({"class_names": ("a", "a", "b")}, "unique"),
        ({"class_names": ("x" * 300, "b", "c")}, r"classes\[0\]"),
    ],
)
def test_encode_payload_rejects_bad_header(change: dict[str, object], match: str) -> None:
    with pytest.raises(PayloadError, match=match):
        encode_payload(dataclasses.replace(make_payload(), **change), signing_key=None)  # type: ignore[arg-type]


def test_decode_payload_names_unknown_codec() -> None:
    data = encode_payload(make_payload(), signing_key=None)
    body = cbor2.loads(cbor2.loads(data)["body"])
    sel = dict(body["selection"], codec="lzma")
    with pytest.raises(PayloadDecodeError, match=r"selection\.codec"):
        decode_payload(_reencode(data, {"selection": sel}), trusted_keys={}, allow_unsigned=True)


def test_decode_payload_rejects_huge_count_before_decoding() -> None:
    data = encode_payload(make_payload(), signing_key=None)
    body = cbor2.loads(cbor2.loads(data)["body"])
    sel = dict(body["selection"], count=10**12)
    with pytest.raises(PayloadLimitError, match=r"selection\.count"):
        decode_payload(_reencode(data, {"selection": sel}), trusted_keys={}, allow_unsigned=True)


def test_decode_payload_rejects_non_canonical_and_tagged_cbor() -> None:
    data = encode_payload(make_payload(), signing_key=None)
    env = cbor2.loads(data)
    at = data.rindex(b"\x66format\x01") + 7  # the envelope's own format field, after the body
    non_canonical = data[:at] + b"\x18\x01" + data[at + 1 :]  # 1 spelled in two bytes
    tagged = cbor2.dumps({"format": 1, "body": cbor2.CBORTag(24, env["body"])}, canonical=True)
    with pytest.raises(PayloadDecodeError, match="canonical"):
        decode_payload(non_canonical, trusted_keys={}, allow_unsigned=True)
    with pytest.raises(PayloadDecodeError, match="tags"):
        decode_payload(tagged, trusted_keys={}, allow_unsigned=True)


def test_decode_payload_rejects_oversized_input() -> None:
    with pytest.raises(PayloadLimitError, match="payload"):
        decode_payload(bytes(9 * 1024 * 1024), trusted_keys={}, allow_unsigned=True)


def test_inspect_payload_reports_signature_status(keys: Keys) -> None:
    key, trusted = keys
    data = encode_payload(make_payload(), signing_key=key)
    env = cbor2.loads(data)
    env["signature"] = bytes(64)
    forged = cbor2.dumps(env, canonical=True)
    assert inspect_payload(data, trusted_keys=trusted).signature == "valid"
    assert inspect_payload(data, trusted_keys={}).signature == "unknown-key"
    assert inspect_payload(forged, trusted_keys=trusted).signature == "invalid"
    unsigned = encode_payload(make_payload(), signing_key=None)
    info = inspect_payload(unsigned, trusted_keys=trusted)
    assert info.signature == "unsigned"
    assert info.digest == payload_digest(unsigned)


def test_check_corpus_rejects_other_corpus() -> None:
    payload = make_payload(n=1000)
    check_corpus(payload, fingerprint=FINGERPRINT, size=1000)
    with pytest.raises(PayloadCorpusError, match="fingerprint"):
        check_corpus(payload, fingerprint="cd" * 32, size=1000)
    with pytest.raises(PayloadCorpusError, match="size"):
        check_corpus(payload, fingerprint=FINGERPRINT, size=999)


def test_encode_payload_accepts_numpy_scalars_in_provenance() -> None:
    # Prepare: what a builder naturally passes on from NumPy code
    payload = make_payload()
    prov = dataclasses.replace(
        payload.provenance,
        params={"seed": np.int64(3), "ratio": np.float32(0.5), "flag": np.bool_(True)},  # type: ignore[dict-item]
        accuracy_estimate=np.float32(0.75),  # type: ignore[arg-type]
    )
    # Execute
    decoded = decode_payload(
        encode_payload(dataclasses.replace(payload, provenance=prov), signing_key=None),
        trusted_keys={},
        allow_unsigned=True,
    )
    # Assert
    assert decoded.provenance.params == {"seed": 3, "ratio": 0.5, "flag": True}
    assert decoded.provenance.accuracy_estimate == 0.75


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        ({"classes": ["x" * 300, "b", "c"]}, PayloadLimitError, r"classes\[0\]"),
        ({"corpus": {"fingerprint": "XYZ", "size": 1000}}, PayloadValueError, "fingerprint"),
        ({"version": "3"}, PayloadDecodeError, "version: expected int"),
        ({"extra": 1}, PayloadDecodeError, "extra: unknown field"),
        ({"format": 2}, PayloadDecodeError, "format: version 2"),
        ({"task": "UPPER"}, PayloadValueError, "task"),
    ],
)
def test_decode_payload_names_bad_body_field(
    edit: dict[str, object], error: type[PayloadError], match: str
) -> None:
    data = encode_payload(make_payload(), signing_key=None)
    with pytest.raises(error, match=match):
        decode_payload(_reencode(data, edit), trusted_keys={}, allow_unsigned=True)


def test_decode_payload_names_missing_body_field() -> None:
    data = encode_payload(make_payload(), signing_key=None)
    body = cbor2.loads(cbor2.loads(data)["body"])
    del body["provenance"]
    bad = cbor2.dumps({"format": 1, "body": cbor2.dumps(body, canonical=True)}, canonical=True)
    with pytest.raises(PayloadDecodeError, match="provenance: missing"):
        decode_payload(bad, trusted_keys={}, allow_unsigned=True)


@pytest.mark.parametrize("k", [1, 40, 900])
@pytest.mark.parametrize("signed", [True, False])
def test_envelope_size_equals_the_encoded_length_for_every_codec(
    keys: Keys, k: int, signed: bool
) -> None:
    # Prepare
    key = keys[0] if signed else None
    payload = make_payload(n=5000, k=k, num_classes=7)
    for codec in CODECS:
        _, data = encode_selection(
            payload.indices, payload.labels, n=5000, num_classes=7, codecs=[codec]
        )
        # Execute
        size = envelope_size(
            payload, codec=codec, data=data, key_id=key.key_id if key is not None else None
        )
        # Assert
        assert size == len(encode_payload(payload, signing_key=key, codecs=[codec])), codec
