"""Damage a device's files the way disks and hostile users do, and undo it (tests and the soak).

damage = corrupt_corpus_image(corpus_dir, index=3)   # bytes inside the image's PNG IDAT chunk
...                                                  # the device sees a corrupt image
damage.repair()                                      # the original bytes are back
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

from plada.corpus import Corpus


@dataclass(frozen=True)
class Damage:
    path: Path
    offset: int
    original: bytes

    def repair(self) -> None:
        with self.path.open("r+b") as handle:
            handle.seek(self.offset)
            handle.write(self.original)
            handle.flush()
            os.fsync(handle.fileno())


def corrupt_corpus_image(corpus_dir: Path, index: int, *, num_bytes: int = 8) -> Damage:
    """XOR `num_bytes` bytes of deflate data inside image `index`'s IDAT chunk, in its shard."""
    with Corpus.open(corpus_dir) as corpus:
        data = corpus.read_bytes(index)
        number, start, _ = corpus.stored_at(index)
        shard = corpus.path / corpus.shards[number].file
    idat = data.find(b"IDAT")
    if idat < 0:
        raise ValueError(f"image {index} has no IDAT chunk")
    offset = start + idat + 4 + 2  # past the chunk type and the 2-byte zlib header
    with shard.open("r+b") as handle:
        handle.seek(offset)
        original = handle.read(num_bytes)
        handle.seek(offset)
        handle.write(bytes(b ^ 0xFF for b in original))
        handle.flush()
        os.fsync(handle.fileno())
    return Damage(shard, offset, original)


def gray_png(path: Path, *, width: int, height: int, rows: int | None = None) -> Path:
    """A grayscale PNG of zeros declaring width x height, written row by row (the writer never
    holds the pixels). With `rows`, only that many rows of data follow: a few hundred bytes that
    still ask a decoder for width * height bytes (a decompression bomb's header)."""
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(b"\x00" + bytes(width)) for _ in range(rows or height)]
    body = b"".join(parts) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", body)
        + _chunk(b"IEND", b"")
    )
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
