"""Key files, key ids, sign / verify."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key

from plada.errors import KeyFileError, PayloadSignatureError
from plada.signing import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    load_trusted_keys,
    sign,
    verify,
)


def test_generate_keypair_writes_private_key_0600(tmp_path: Path) -> None:
    # Execute
    private, public = generate_keypair(tmp_path / "keys")
    # Assert
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.name == "private.pem" and public.name == "public.pem"
    assert load_private_key(private).key_id == load_public_key(public)[0]


def test_generate_keypair_refuses_to_overwrite(tmp_path: Path) -> None:
    generate_keypair(tmp_path)
    with pytest.raises(KeyFileError, match="already exists"):
        generate_keypair(tmp_path)


def test_key_id_is_sha256_prefix_of_raw_public_key(tmp_path: Path) -> None:
    _, public_path = generate_keypair(tmp_path)
    kid, public = load_public_key(public_path)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert kid == key_id(public) == hashlib.sha256(raw).hexdigest()[:16]


def test_verify_accepts_own_signature_and_rejects_changed_body(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path)
    key = load_private_key(private)
    trusted = load_trusted_keys([public])
    signature = sign(b"body", key)
    verify(b"body", signature, key.key_id, trusted)
    with pytest.raises(PayloadSignatureError, match="invalid"):
        verify(b"bodY", signature, key.key_id, trusted)
    with pytest.raises(PayloadSignatureError, match="not a trusted key"):
        verify(b"body", signature, "0" * 16, trusted)


def test_load_keys_reject_missing_garbage_and_non_ed25519(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    ec = tmp_path / "ec.pem"
    ec.write_bytes(
        generate_private_key(SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(KeyFileError, match="cannot read"):
        load_public_key(tmp_path / "missing.pem")
    with pytest.raises(KeyFileError, match=r"garbage\.pem"):
        load_private_key(garbage)
    with pytest.raises(KeyFileError, match="not an Ed25519"):
        load_private_key(ec)
