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
from plada.errors import CorpusCorruptError, CorpusNotFoundError

MANIFEST_FILE = "manifest.tsv"


INDEX_FILE = "index.bin"


SHARD_DIR = "shards"


MANIFEST_HEADER = b"#plada-corpus-manifest 1\tsource\tkey\tmode\twidth\theight\tpixel_sha256"


IMAGE_MODES = ("L", "RGB")


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


def source_runs(lines: list[bytes]) -> list[SourceInfo]:
    runs: list[SourceInfo] = []
    current: bytes | None = None
    start = 0
    for i, line in enumerate(lines):
        tab = line.find(b"\t")
        if tab <= 0:
            raise CorpusCorruptError(f"{MANIFEST_FILE}: image {i} has no source field")
        name = line[:tab]
        if name != current:
            if current is not None:
                runs.append(SourceInfo(current.decode("utf-8", "replace"), i - start, start))
            current, start = name, i
    if current is not None:
        runs.append(SourceInfo(current.decode("utf-8", "replace"), len(lines) - start, start))
    return runs


def read_manifest(manifest_path: Path, header: CorpusHeader) -> list[bytes]:
    """The manifest's image lines, checked against the fingerprint and the image count."""
    try:
        manifest = manifest_path.read_bytes()
    except FileNotFoundError as exc:
        raise CorpusNotFoundError(f"{manifest_path} is missing") from exc
    actual = hashlib.sha256(manifest).hexdigest()
    if actual != header.fingerprint:
        raise CorpusCorruptError(
            f"{manifest_path}: sha256 {actual} does not match the fingerprint "
            f"{header.fingerprint} in {HEADER_FILE}"
        )
    lines = manifest.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not lines or lines[0] != MANIFEST_HEADER:
        raise CorpusCorruptError(f"{manifest_path}: first line is not the manifest header")
    lines = lines[1:]
    if len(lines) != header.num_images:
        raise CorpusCorruptError(
            f"{manifest_path}: {len(lines)} images, {HEADER_FILE} says {header.num_images}"
        )
    return lines


def read_index(index_path: Path, header: CorpusHeader) -> np.ndarray:
    """index.bin as (N,) records, checked against the header's hash and shard list."""
    n = header.num_images
    try:
        index_bytes = index_path.read_bytes()
    except FileNotFoundError as exc:
        raise CorpusNotFoundError(f"{index_path} is missing") from exc
    if len(index_bytes) != n * INDEX_DTYPE.itemsize:
        raise CorpusCorruptError(
            f"{index_path}: {len(index_bytes)} bytes, expected "
            f"{n * INDEX_DTYPE.itemsize} for {n} images"
        )
    if hashlib.sha256(index_bytes).hexdigest() != header.index.sha256:
        raise CorpusCorruptError(f"{index_path}: sha256 does not match {HEADER_FILE}")
    index = np.frombuffer(index_bytes, dtype=INDEX_DTYPE)
    shards = header.shards
    if n and int(index["shard"].max()) >= len(shards):
        bad = int(np.argmax(index["shard"] >= len(shards)))
        raise CorpusCorruptError(f"{index_path}: image {bad} points to a shard that is not listed")
    if sum(s.num_images for s in shards) != n:
        raise CorpusCorruptError(
            f"{index_path.parent / HEADER_FILE}: shard image counts do not add up to {n}"
        )
    return index
