"""The reference corpus on disk, and the reader every device and the builder use.

A corpus is a directory::

    corpus.json            header: format, version, fingerprint, num_images, sources, index, shards
    manifest.tsv           one line per image, in index order: source, key, mode, width, height,
                           sha256 of the decoded pixels. fingerprint = sha256(manifest.tsv bytes).
    index.bin              one 48-byte record per image: shard, length, offset of the stored PNG
                           inside its shard, sha256 of the stored PNG bytes (see INDEX_DTYPE)
    shards/shard-NNNNN.zip zip files (STORED, no compression) of <index:09d>.png members

Why two hashes: the fingerprint (what payloads refer to) covers *pixels*, not PNG bytes, so the
same inputs give the same fingerprint on any machine even if another zlib writes other PNG bytes.
The per-file hash in index.bin makes `verify` and checked reads cheap (no decode). Zip shards can
be copied, listed and tested piece by piece with standard tools (`unzip -t`); each shard's sha256
and size are in corpus.json. Random access is O(1): index.bin gives (shard, offset, length) and
one pread fetches the bytes (no mapping: a reader's resident memory stays flat however much of
the corpus it reads).
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from plada.corpus.header import FORMAT_VERSION, HEADER_FILE, CorpusHeader, ShardInfo, read_header
from plada.corpus.manifest import (
    IMAGE_MODES,
    INDEX_DTYPE,
    INDEX_FILE,
    MANIFEST_FILE,
    ManifestEntry,
    SourceInfo,
    parse_manifest_line,
    pixel_digest,
    read_index,
    read_manifest,
)
from plada.corpus.manifest_lines import ManifestLines
from plada.corpus.verify import VerifyProblem, VerifyReport, verify_corpus
from plada.errors import CorpusCorruptError, CorpusError, CorpusMismatchError, CorpusNotFoundError


class Corpus:
    """Read-only view of a corpus directory. Index = position; thread-safe reads.

    `verify_reads=True` checks the stored bytes of every read against index.bin and the decoded
    pixels of every `image()` against the manifest, so a reader never returns a wrong image.
    """

    path: Path
    fingerprint: str
    sources: list[SourceInfo]
    shards: list[ShardInfo]
    verify_reads: bool

    def __init__(
        self,
        path: Path,
        *,
        header: CorpusHeader,
        manifest_lines: ManifestLines,
        sources: list[SourceInfo],
        index: np.ndarray,
        verify_reads: bool,
    ) -> None:
        self.path = path
        self.header = header
        self.fingerprint = header.fingerprint
        self.shards = list(header.shards)
        self.verify_reads = verify_reads
        self._lines = manifest_lines
        # (N,) INDEX_DTYPE, memory-mapped: no per-field copies (they were 56 MB at 1M images)
        self._index = index
        # raw records (N, 48) for the 32-byte digests; never index the S32 field directly
        # (numpy strips trailing NULs)
        self._records = index.view(np.uint8).reshape(len(index), INDEX_DTYPE.itemsize)
        self._fds: dict[int, int] = {}  # open shard file descriptors, by shard number
        self._fds_lock = threading.Lock()  # reads are thread-safe; opening a shard once is not
        # closed with the Corpus (or by close()): a reader that is simply dropped leaks nothing
        weakref.finalize(self, _close_all, self._fds)
        self.sources = sources

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(
        cls,
        path: Path,
        *,
        verify_reads: bool = False,
        expected_fingerprint: str | None = None,
        check_shards: bool = True,
    ) -> Corpus:
        """Open and check the structure (header, manifest hash, index hash, shard sizes).

        Raises CorpusNotFoundError (no corpus, missing file or shard), CorpusCorruptError (a file
        does not match corpus.json) or CorpusMismatchError (not the expected fingerprint).
        `check_shards=False` skips the shard presence/size check (used by verify, which then
        reports each affected index instead of failing on the first shard).
        """
        path = Path(path)
        header_path = path / HEADER_FILE
        if not path.is_dir():
            raise CorpusNotFoundError(f"no corpus directory at {path}")
        if not header_path.is_file():
            raise CorpusNotFoundError(f"{header_path} is missing: not a plada corpus")
        header = read_header(header_path)
        if expected_fingerprint is not None and header.fingerprint != expected_fingerprint:
            raise CorpusMismatchError(
                f"corpus {path} has fingerprint {header.fingerprint}, expected "
                f"{expected_fingerprint}"
            )
        lines, sources = read_manifest(path / MANIFEST_FILE, header)
        index = read_index(path / INDEX_FILE, header)
        corpus = cls(
            path,
            header=header,
            manifest_lines=lines,
            sources=sources,
            index=index,
            verify_reads=verify_reads,
        )
        if check_shards:
            for number in range(len(corpus.shards)):
                problem = corpus.shard_file_problem(number)
                if problem is not None:
                    exc_type = (
                        CorpusNotFoundError if problem.kind == "missing" else CorpusCorruptError
                    )
                    raise exc_type(problem.message)
        return corpus

    # ---------------------------------------------------------------- metadata
    def __len__(self) -> int:
        return len(self._lines)

    def __repr__(self) -> str:
        return f"Corpus({str(self.path)!r}, n={len(self)}, fingerprint={self.fingerprint[:12]}...)"

    def __enter__(self) -> Corpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        _close_all(self._fds)

    def entry(self, index: int) -> ManifestEntry:
        """The manifest line of one image (source, key, mode, size, pixel hash)."""
        i = self._check_index(index)
        return parse_manifest_line(i, self._lines[i])

    def bytes_on_disk(self) -> int:
        total = 0
        for p in self.path.rglob("*"):
            if p.is_file():
                total += p.stat().st_size
        return total

    def info(self) -> dict[str, Any]:
        """What `plada corpus info --json` prints."""
        return {
            "path": str(self.path),
            "fingerprint": self.fingerprint,
            "num_images": len(self),
            "sources": [{"name": s.name, "count": s.count, "start": s.start} for s in self.sources],
            "num_shards": len(self.shards),
            "bytes_on_disk": self.bytes_on_disk(),
            "format_version": FORMAT_VERSION,
        }

    # ---------------------------------------------------------------- reads
    def read_bytes(self, index: int) -> bytes:
        """The stored PNG bytes of one image; hash-checked when verify_reads is set."""
        i = self._check_index(index)
        shard, offset, length = self.stored_at(i)
        data = self.read_stored(shard, offset, length, i)
        if len(data) < length:
            raise CorpusCorruptError(
                f"image {i}: shard {self.shards[shard].file} is truncated "
                f"({offset + len(data)} bytes, image ends at {offset + length})"
            )
        if self.verify_reads and hashlib.sha256(data).digest() != self.stored_digest(i):
            raise CorpusCorruptError(
                f"image {i}: stored bytes in {self.shards[shard].file} at offset {offset} do not "
                f"match their sha256 in {INDEX_FILE}"
            )
        return data

    def image(self, index: int) -> Image.Image:
        """One decoded image, mode RGB or L (alpha was composited over white at build time)."""
        i = self._check_index(index)
        data = self.read_bytes(i)
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception as exc:  # Pillow raises many types for bad data
            raise CorpusCorruptError(f"image {i}: cannot decode its PNG ({exc})") from exc
        if img.mode not in IMAGE_MODES:
            raise CorpusCorruptError(f"image {i}: mode {img.mode}, expected L or RGB")
        if self.verify_reads:
            expected = self.entry(i)
            if pixel_digest(img) != expected.pixel_sha256:
                raise CorpusCorruptError(
                    f"image {i}: decoded pixels do not match the manifest hash"
                )
        return img

    def images(self, indices: Sequence[int]) -> list[Image.Image]:
        return [self.image(int(i)) for i in indices]

    def iter_images(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, Image.Image]]:
        """Stream (index, image) in index order over [start, stop)."""
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(start, 0), stop):
            yield i, self.image(i)

    # ---------------------------------------------------------------- verify
    def verify(
        self,
        *,
        deep: bool = False,
        check_shard_hashes: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> VerifyReport:
        """Check every image's stored bytes against index.bin (and, if deep, decode and check the
        pixels against the manifest). Never raises for bad data: every problem is reported with
        its index or file."""
        return verify_corpus(
            self, deep=deep, check_shard_hashes=check_shard_hashes, progress=progress
        )

    # ---------------------------------------------------------------- internals
    def stored_at(self, i: int) -> tuple[int, int, int]:
        """(shard number, offset, length) of image i's stored PNG."""
        record = self._index[i]
        return int(record["shard"]), int(record["offset"]), int(record["length"])

    def stored_digest(self, i: int) -> bytes:
        return self._records[i, 16:48].tobytes()

    def _check_index(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < len(self._lines):
            raise IndexError(f"image index {index} out of range for a corpus of {len(self)}")
        return i

    def shard_file_problem(self, number: int) -> VerifyProblem | None:
        shard = self.shards[number]
        p = self.path / shard.file
        span = f"images {shard.first_index}..{shard.first_index + shard.num_images - 1}"
        if not p.is_file():
            return VerifyProblem("missing", f"shard {p} is missing ({span})", file=shard.file)
        size = p.stat().st_size
        if size != shard.num_bytes:
            return VerifyProblem(
                "truncated" if size < shard.num_bytes else "size",
                f"shard {p} has {size} bytes, {HEADER_FILE} says {shard.num_bytes} ({span})",
                file=shard.file,
            )
        return None

    def read_stored(self, shard: int, offset: int, length: int, index: int) -> bytes:
        """Up to `length` stored bytes at `offset` of a shard (fewer: the shard is truncated).

        One pread on the shard's file, not a memory mapping: a mapping leaves every page it
        touched (and the cached pages the kernel maps around each fault) in the reader's resident
        set, so verifying or embedding a 1M-image corpus held most of its 1.4 GB, and a device's
        cold apply of 20,000 scattered images much of it. Thread-safe (pread has no file
        position)."""
        fd = self._fds.get(shard)
        if fd is None:
            with self._fds_lock:  # embedding lanes read from several threads
                fd = self._fds.get(shard)
                if fd is None:
                    p = self.path / self.shards[shard].file
                    try:
                        fd = os.open(p, os.O_RDONLY | os.O_CLOEXEC)
                    except FileNotFoundError as exc:
                        raise CorpusNotFoundError(f"image {index}: shard {p} is missing") from exc
                    self._fds[shard] = fd
        return os.pread(fd, length, offset)


def _close_all(fds: dict[int, int]) -> None:
    for fd in fds.values():
        os.close(fd)
    fds.clear()


def check_fingerprint(corpus: Corpus, expected: str) -> None:
    """Raise CorpusMismatchError unless the corpus is the expected one."""
    if corpus.fingerprint != expected:
        raise CorpusMismatchError(
            f"corpus {corpus.path} has fingerprint {corpus.fingerprint}, expected {expected}"
        )


__all__ = ["Corpus", "CorpusError", "check_fingerprint"]
