"""plada.revocation: one task version's signed revocation, verified like a payload."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from plada.errors import PayloadDecodeError, PayloadSignatureError
from plada.payload import decode_payload
from plada.revocation import Revocation, decode_revocation, encode_revocation, inspect_revocation
from plada.signing import SigningKey, generate_keypair, load_private_key, load_public_key
from plada.tombstone import decode_tombstone, encode_tombstone, make_tombstone
from plada.topics import TopicKind, TopicScheme

_REV = Revocation(
    task="bins", version=2, payload_id="ab" * 32, created_at=1_700_000_000, note="canary failed"
)


def _keys(folder: Path) -> tuple[SigningKey, dict[str, Ed25519PublicKey]]:
    private, public = generate_keypair(folder)
    kid, key = load_public_key(public)
    return load_private_key(private), {kid: key}


def test_revocation_round_trips_under_its_key(tmp_path: Path) -> None:
    # Prepare
    private, trusted = _keys(tmp_path)
    # Execute
    data = encode_revocation(_REV, signing_key=private)
    # Assert
    assert decode_revocation(data, trusted_keys=trusted) == _REV
    assert inspect_revocation(data, trusted_keys=trusted).signature == "valid"


def test_unsigned_forged_and_tampered_revocations_are_refused(tmp_path: Path) -> None:
    # Prepare
    private, trusted = _keys(tmp_path / "real")
    forger, _ = _keys(tmp_path / "forger")
    env = cbor2.loads(encode_revocation(_REV, signing_key=private))
    env["body"] = cbor2.dumps({**cbor2.loads(env["body"]), "version": 1}, canonical=True)
    cases = {
        "unsigned": encode_revocation(_REV, signing_key=None),
        "not among": encode_revocation(_REV, signing_key=forger),
        "verify": cbor2.dumps(env, canonical=True),  # a real signature over other content
    }
    # Execute / Assert
    for match, data in cases.items():
        with pytest.raises(PayloadSignatureError, match=match):
            decode_revocation(data, trusted_keys=trusted)


def test_a_revocation_is_neither_a_tombstone_nor_a_payload(tmp_path: Path) -> None:
    # Prepare
    private, trusted = _keys(tmp_path)
    revocation = encode_revocation(_REV, signing_key=private)
    tombstone = encode_tombstone(make_tombstone("bins", 2), signing_key=private)
    # Execute / Assert: same envelope and key, different bodies: no replay across kinds
    with pytest.raises(PayloadDecodeError, match="unknown field"):
        decode_tombstone(revocation, trusted_keys=trusted)
    with pytest.raises(PayloadDecodeError, match="unknown field"):
        decode_revocation(tombstone, trusted_keys=trusted)
    with pytest.raises(PayloadDecodeError):
        decode_payload(revocation, trusted_keys=trusted)


def test_a_revocation_names_a_payload_digest() -> None:
    # Execute / Assert
    with pytest.raises(PayloadDecodeError, match="payload"):
        encode_revocation(
            Revocation(task="bins", version=2, payload_id="xyz", created_at=0), signing_key=None
        )


def test_revoked_topic_is_under_the_task_topics_a_device_follows() -> None:
    # Prepare
    topics = TopicScheme()
    # Execute
    topic = topics.task_revoked("canary", "bins")
    parsed = topics.parse(topic)
    # Assert: the device's existing subscription plada/group/<group>/tasks/# carries it
    assert topic == "plada/group/canary/tasks/bins/revoked"
    assert topic.startswith(topics.tasks_filter("canary")[:-1])
    assert parsed is not None and parsed.kind is TopicKind.REVOKED and parsed.task == "bins"
