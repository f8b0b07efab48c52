"""plada.tombstone: a task's signed retirement, verified like a payload."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plada.errors import PayloadDecodeError, PayloadSignatureError
from plada.payload import decode_payload, encode_payload
from plada.signing import SigningKey, generate_keypair, load_private_key, load_public_key
from plada.tombstone import (
    Tombstone,
    decode_tombstone,
    encode_tombstone,
    inspect_tombstone,
)
from tests.unit.plada.payload_helpers import make_payload

_TOMB = Tombstone(task="bins", version=2, created_at=1_700_000_000, note="season over")


def _keys(folder: Path) -> tuple[SigningKey, dict[str, Ed25519PublicKey]]:
    private, public = generate_keypair(folder)
    kid, key = load_public_key(public)
    return load_private_key(private), {kid: key}


def test_tombstone_round_trips_under_its_key(tmp_path: Path) -> None:
    # Prepare
    private, trusted = _keys(tmp_path)
    # Execute
    data = encode_tombstone(_TOMB, signing_key=private)
    # Assert
    assert decode_tombstone(data, trusted_keys=trusted) == _TOMB
    assert inspect_tombstone(data, trusted_keys=trusted).signature == "valid"


def test_unsigned_and_forged_tombstones_are_refused(tmp_path: Path) -> None:
    # Prepare
    private, trusted = _keys(tmp_path / "real")
    forger, _ = _keys(tmp_path / "forger")
    unsigned = encode_tombstone(_TOMB, signing_key=None)
    foreign = encode_tombstone(_TOMB, signing_key=forger)
    env = cbor2.loads(encode_tombstone(_TOMB, signing_key=private))
    env["body"] = cbor2.dumps(
        {**cbor2.loads(env["body"]), "version": 99}, canonical=True
    )  # a real signature over other content
    tampered = cbor2.dumps(env, canonical=True)
    # Execute / Assert
    for data, match in ((unsigned, "unsigned"), (foreign, "not among"), (tampered, "verify")):
        with pytest.raises(PayloadSignatureError, match=match):
            decode_tombstone(data, trusted_keys=trusted)


def test_a_payload_is_not_a_tombstone_nor_the_reverse(tmp_path: Path) -> None:
    # Prepare
    private, trusted = _keys(tmp_path)
    payload = encode_payload(make_payload(), signing_key=private)
    tomb = encode_tombstone(_TOMB, signing_key=private)
    # Execute / Assert
    with pytest.raises(PayloadDecodeError):
        decode_tombstone(payload, trusted_keys=trusted)
    with pytest.raises(PayloadDecodeError):
        decode_payload(tomb, trusted_keys=trusted)
