"""Ed25519 keys, signing and verification of payload bodies.

A key id is the first 16 hex characters of sha256 over the raw 32-byte public key: short enough to
travel in every envelope, long enough that two keys of one fleet never collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from plada.atomic import write_bytes_atomic
from plada.errors import KeyFileError, PayloadSignatureError

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "SigningKey",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "load_trusted_keys",
    "sign",
    "verify",
]

PRIVATE_KEY_FILE = "private.pem"
PUBLIC_KEY_FILE = "public.pem"
SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class SigningKey:
    key: Ed25519PrivateKey
    key_id: str


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(out_dir: Path, *, overwrite: bool = False) -> tuple[Path, Path]:
    """Write `private.pem` (PKCS#8, mode 0600) and `public.pem` into out_dir; returns both paths."""
    out_dir = Path(out_dir)
    private_path, public_path = out_dir / PRIVATE_KEY_FILE, out_dir / PUBLIC_KEY_FILE
    if not overwrite:
        for path in (private_path, public_path):
            if path.exists():
                raise KeyFileError(f"{path}: already exists (refusing to overwrite a key)")
    out_dir.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_bytes_atomic(private_path, private_pem, mode=0o600)
    write_bytes_atomic(public_path, public_pem, mode=0o644)
    return private_path, public_path


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from exc


def load_private_key(path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key ({type(key).__name__})")
    return SigningKey(key=key, key_id=key_id(key.public_key()))


def load_public_key(path: Path) -> tuple[str, Ed25519PublicKey]:
    try:
        key = serialization.load_pem_public_key(_read(path))
    except (ValueError, TypeError) as exc:
        raise KeyFileError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key ({type(key).__name__})")
    return key_id(key), key


def load_trusted_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    return dict(load_public_key(Path(path)) for path in paths)


def sign(body: bytes, key: SigningKey) -> bytes:
    return key.key.sign(body)


def verify(
    body: bytes, signature: bytes, kid: str, trusted_keys: Mapping[str, Ed25519PublicKey]
) -> None:
    """Raise PayloadSignatureError unless `signature` signs `body` with the trusted key `kid`."""
    public = trusted_keys.get(kid)
    if public is None:
        raise PayloadSignatureError(f"key_id: {kid!r} is not a trusted key")
    try:
        public.verify(signature, body)
    except InvalidSignature as exc:
        raise PayloadSignatureError(f"signature: invalid for key {kid}") from exc
