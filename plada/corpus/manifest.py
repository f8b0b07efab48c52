"""manifest.tsv and index.bin: what each image is and where its PNG is stored, and their checks.

manifest.tsv  one line per image, in index order: source, key, mode, width, height, sha256 of
              the decoded pixels (pixel_digest). fingerprint = sha256(manifest.tsv bytes).
index.bin     one 48-byte record per image: shard, length, offset of the stored PNG inside
              its shard, sha256 of the stored PNG bytes (INDEX_DTYPE).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from plada.corpus.header import HEADER_FILE, CorpusHeader
from plada.corpus.manifest_lines import ManifestLines, scan_manifest
from plada.errors import CorpusCorruptError, CorpusNotFoundError

MANIFEST_FILE = "manifest.tsv"


INDEX_FILE = "index.bin"


SHARD_DIR = "shards"


MANIFEST_HEADER = b"#plada-corpus-manifest 1\tsource\tkey\tmode\twidth\theight\tpixel_sha256"


IMAGE_MODES = ("L", "RGB")


_INDEX_CHUNK_RECORDS = 1 << 16  # index.bin records hashed at a time (3 MB)


# One record per image, little-endian, 48 bytes:
# the stored PNG is shards[shard][offset : offset + length].
INDEX_DTYPE = np.dtype([("shard", "<u4"), ("length", "<u4"), ("offset", "<u8"), ("sha256", "S32")])


def pixel_digest(image: Image.Image) -> str:
    """Hex sha256 over mode, size and raw pixels: the content hash the fingerprint covers."""
    header = f"{image.mode} {image.width} {image.height}\n".encode("ascii")
    return hashlib.sha256(header + image.tobytes()).hexdigest()


@dataclass(frozen=True)
class SourceInfo:
    """A run of consecutive images from one source: indices [start, start + count)."""

    name: str
    count: int
    start: int = 0


@dataclass(frozen=True)
class ManifestEntry:
    """One manifest line: where an image came from and what its pixels hash to."""

    index: int
    source: str
    key: str
    mode: str
    width: int
    height: int
    pixel_sha256: str


def parse_manifest_line(index: int, line: bytes) -> ManifestEntry:
    fields = line.split(b"\t")
    if len(fields) != 6:
        raise CorpusCorruptError(
            f"{MANIFEST_FILE}: image {index} has {len(fields)} fields, expected 6"
        )
    try:
        source, key, mode = (f.decode("utf-8") for f in fields[:3])
        width, height = int(fields[3]), int(fields[4])
        digest = fields[5].decode("ascii")
    except (UnicodeDecodeError, ValueError) as exc:
        raise CorpusCorruptError(f"{MANIFEST_FILE}: image {index}: bad field ({exc})") from exc
    if mode not in IMAGE_MODES or width <= 0 or height <= 0 or len(digest) != 64:
        raise CorpusCorruptError(f"{MANIFEST_FILE}: image {index}: bad mode, size or hash")
    return ManifestEntry(index, source, key, mode, width, height, digest)


def read_manifest(
    manifest_path: Path, header: CorpusHeader
) -> tuple[ManifestLines, list[SourceInfo]]:
    """The manifest's image lines (memory-mapped, manifest_lines.py) and its source runs,
    checked against the fingerprint and the image count."""
    actual, problem, lines, runs = scan_manifest(manifest_path, MANIFEST_HEADER)
    if actual != header.fingerprint:
        raise CorpusCorruptError(
            f"{manifest_path}: sha256 {actual} does not match the fingerprint "
            f"{header.fingerprint} in {HEADER_FILE}"
        )
    if problem is not None:
        raise CorpusCorruptError(problem)
    if len(lines) != header.num_images:
        raise CorpusCorruptError(
            f"{manifest_path}: {len(lines)} images, {HEADER_FILE} says {header.num_images}"
        )
    return lines, [SourceInfo(name, count, start) for name, count, start in runs]


def read_index(index_path: Path, header: CorpusHeader) -> np.ndarray:
    """index.bin as (N,) records, checked against the header's hash and shard list.

    Hashed and checked in one streamed pass, then memory-mapped: a 1M-image index is 48 MB that a
    device reading a few thousand images never needs resident."""
    n = header.num_images
    record = INDEX_DTYPE.itemsize
    try:
        size = index_path.stat().st_size
    except FileNotFoundError as exc:
        raise CorpusNotFoundError(f"{index_path} is missing") from exc
    if size != n * record:
        raise CorpusCorruptError(
            f"{index_path}: {size} bytes, expected {n * record} for {n} images"
        )
    digest = hashlib.sha256()
    shards = header.shards
    first_bad: int | None = None
    with index_path.open("rb") as file:
        done = 0
        while piece := file.read(_INDEX_CHUNK_RECORDS * record):
            digest.update(piece)
            bad = np.flatnonzero(np.frombuffer(piece, dtype=INDEX_DTYPE)["shard"] >= len(shards))
            if first_bad is None and bad.size:
                first_bad = done + int(bad[0])
            done += len(piece) // record
    if digest.hexdigest() != header.index.sha256:
        raise CorpusCorruptError(f"{index_path}: sha256 does not match {HEADER_FILE}")
    if first_bad is not None:
        raise CorpusCorruptError(
            f"{index_path}: image {first_bad} points to a shard that is not listed"
        )
    if sum(s.num_images for s in shards) != n:
        raise CorpusCorruptError(
            f"{index_path.parent / HEADER_FILE}: shard image counts do not add up to {n}"
        )
    if n == 0:
        return np.zeros(0, dtype=INDEX_DTYPE)
    return np.memmap(index_path, dtype=INDEX_DTYPE, mode="r", shape=(n,))
