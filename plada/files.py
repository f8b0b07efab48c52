"""File helpers every side shares: the one sha256 of a file and the one list of image suffixes."""

from __future__ import annotations

import hashlib
from pathlib import Path

# What Pillow decodes that a corpus, a target task or a device's probe folder may hold.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
_CHUNK_BYTES = 1 << 20


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (encoder weights are 10-100 MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
