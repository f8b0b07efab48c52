"""The reference corpus on disk, and the reader every device and the builder use.

A corpus is a directory::

    corpus.json            header: format, version, fingerprint, num_images, sources, index, shards
    manifest.tsv           one line per image, in index order: source, key, mode, width, height,
                           sha256 of the decoded pixels. fingerprint = sha256(manifest.tsv bytes).
    index.bin              one 48-byte record per image: shard, length, offset of the stored PNG
                           inside its shard, sha256 of the stored PNG bytes (see _INDEX_DTYPE)
    shards/shard-NNNNN.zip zip files (STORED, no compression) of <index:09d>.png members

Why two hashes: the fingerprint (what payloads refer to) covers *pixels*, not PNG bytes, so the
same inputs give the same fingerprint on any machine even if another zlib writes other PNG bytes.
The per-file hash in index.bin makes `verify` and checked reads cheap (no decode). Zip shards can
be copied, listed and tested piece by piece with standard tools (`unzip -t`); each shard's sha256
and size are in corpus.json. Random access is O(1): index.bin gives (shard, offset, length) and
shards are memory-mapped.
"""

from __future__ import annotations

import hashlib
import io
import json
import mmap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from plada.errors import CorpusCorruptError, CorpusError, CorpusMismatchError, CorpusNotFoundError
from plada.files import sha256_file

FORMAT_NAME = "plada-corpus"
FORMAT_VERSION = 1
HEADER_FILE = "corpus.json"
MANIFEST_FILE = "manifest.tsv"
INDEX_FILE = "index.bin"
SHARD_DIR = "shards"
MANIFEST_HEADER = b"#plada-corpus-manifest 1\tsource\tkey\tmode\twidth\theight\tpixel_sha256"
IMAGE_MODES = ("L", "RGB")

# One record per image, little-endian, 48 bytes:
# the stored PNG is shards[shard][offset : offset + length].
_INDEX_DTYPE = np.dtype([("shard", "<u4"), ("length", "<u4"), ("offset", "<u8"), ("sha256", "S32")])


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


@dataclass(frozen=True)
class ShardInfo:
    file: str  # relative to the corpus directory
    first_index: int
    num_images: int
    num_bytes: int
    sha256: str


@dataclass(frozen=True)
class VerifyProblem:
    """One thing wrong. `index` is None for problems that concern a whole file."""

    kind: str  # missing | truncated | size | hash | decode | pixels | shard-hash
    message: str
    index: int | None = None
    file: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "index": self.index, "file": self.file, "message": self.message}


@dataclass
class VerifyReport:
    num_images: int
    num_checked: int = 0
    seconds: float = 0.0
    deep: bool = False
    problems: list[VerifyProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_indices(self) -> list[int]:
        return sorted({p.index for p in self.problems if p.index is not None})

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "num_images": self.num_images,
            "num_checked": self.num_checked,
            "deep": self.deep,
            "seconds": round(self.seconds, 3),
            "bad_indices": self.bad_indices,
            "problems": [p.to_json() for p in self.problems],
        }


def _require(obj: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        raise CorpusCorruptError(f"{where}: missing key {key!r}")
    value = obj[key]
    if kind is int and isinstance(value, bool):
        raise CorpusCorruptError(f"{where}: key {key!r} must be int, got bool")
    if not isinstance(value, kind):
        raise CorpusCorruptError(
            f"{where}: key {key!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


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
        header: dict[str, Any],
        manifest_lines: list[bytes],
        index: np.ndarray,
        shards: list[ShardInfo],
        verify_reads: bool,
    ) -> None:
        self.path = path
        self.fingerprint = str(header["fingerprint"])
        self.shards = shards
        self.verify_reads = verify_reads
        self._header = header
        self._lines = manifest_lines
        self._index = index  # (N,) _INDEX_DTYPE
        self._shard_of = index["shard"].astype(np.int64)
        self._offset = index["offset"].astype(np.int64)
        self._length = index["length"].astype(np.int64)
        # raw 32-byte digests; never index the S32 field directly (numpy strips trailing NULs)
        self._digests = np.ascontiguousarray(index["sha256"]).tobytes()
        self._maps: dict[int, mmap.mmap] = {}
        self.sources = _source_runs(manifest_lines)

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
        try:
            header = json.loads(header_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorpusCorruptError(f"{header_path}: unreadable JSON ({exc})") from exc
        if not isinstance(header, dict):
            raise CorpusCorruptError(f"{header_path}: top level must be an object")
        where = str(header_path)
        if header.get("format") != FORMAT_NAME:
            raise CorpusCorruptError(f"{where}: key 'format' must be {FORMAT_NAME!r}")
        version = _require(header, "version", int, where)
        if version != FORMAT_VERSION:
            raise CorpusCorruptError(
                f"{where}: format version {version} is not supported (this reader: "
                f"{FORMAT_VERSION})"
            )
        fingerprint = _require(header, "fingerprint", str, where)
        num_images = _require(header, "num_images", int, where)
        if expected_fingerprint is not None and fingerprint != expected_fingerprint:
            raise CorpusMismatchError(
                f"corpus {path} has fingerprint {fingerprint}, expected {expected_fingerprint}"
            )

        manifest_path = path / MANIFEST_FILE
        try:
            manifest = manifest_path.read_bytes()
        except FileNotFoundError as exc:
            raise CorpusNotFoundError(f"{manifest_path} is missing") from exc
        actual = hashlib.sha256(manifest).hexdigest()
        if actual != fingerprint:
            raise CorpusCorruptError(
                f"{manifest_path}: sha256 {actual} does not match the fingerprint {fingerprint} "
                f"in {HEADER_FILE}"
            )
        lines = manifest.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        if not lines or lines[0] != MANIFEST_HEADER:
            raise CorpusCorruptError(f"{manifest_path}: first line is not the manifest header")
        lines = lines[1:]
        if len(lines) != num_images:
            raise CorpusCorruptError(
                f"{manifest_path}: {len(lines)} images, {HEADER_FILE} says {num_images}"
            )

        index_meta = _require(header, "index", dict, where)
        index_path = path / INDEX_FILE
        try:
            index_bytes = index_path.read_bytes()
        except FileNotFoundError as exc:
            raise CorpusNotFoundError(f"{index_path} is missing") from exc
        if len(index_bytes) != num_images * _INDEX_DTYPE.itemsize:
            raise CorpusCorruptError(
                f"{index_path}: {len(index_bytes)} bytes, expected "
                f"{num_images * _INDEX_DTYPE.itemsize} for {num_images} images"
            )
        if hashlib.sha256(index_bytes).hexdigest() != index_meta.get("sha256"):
            raise CorpusCorruptError(f"{index_path}: sha256 does not match {HEADER_FILE}")
        index = np.frombuffer(index_bytes, dtype=_INDEX_DTYPE)

        shards: list[ShardInfo] = []
        for i, raw in enumerate(_require(header, "shards", list, where)):
            w = f"{where} shards[{i}]"
            if not isinstance(raw, dict):
                raise CorpusCorruptError(f"{w}: must be an object")
            shards.append(
                ShardInfo(
                    file=_require(raw, "file", str, w),
                    first_index=_require(raw, "first_index", int, w),
                    num_images=_require(raw, "num_images", int, w),
                    num_bytes=_require(raw, "bytes", int, w),
                    sha256=_require(raw, "sha256", str, w),
                )
            )
        if num_images and int(index["shard"].max()) >= len(shards):
            bad = int(np.argmax(index["shard"] >= len(shards)))
            raise CorpusCorruptError(
                f"{index_path}: image {bad} points to a shard that is not listed"
            )
        if sum(s.num_images for s in shards) != num_images:
            raise CorpusCorruptError(f"{where}: shard image counts do not add up to {num_images}")
        for s in shards:
            if Path(s.file).is_absolute() or ".." in Path(s.file).parts:
                raise CorpusCorruptError(f"{where}: shard path {s.file!r} leaves the corpus")
        corpus = cls(
            path,
            header=header,
            manifest_lines=lines,
            index=index,
            shards=shards,
            verify_reads=verify_reads,
        )
        if check_shards:
            for number in range(len(shards)):
                problem = corpus._shard_file_problem(number)
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
        for m in self._maps.values():
            m.close()
        self._maps.clear()

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
        shard = int(self._shard_of[i])
        offset = int(self._offset[i])
        length = int(self._length[i])
        m = self._map(shard, i)
        if offset + length > len(m):
            raise CorpusCorruptError(
                f"image {i}: shard {self.shards[shard].file} is truncated "
                f"({len(m)} bytes, image ends at {offset + length})"
            )
        data = m[offset : offset + length]
        if self.verify_reads and hashlib.sha256(data).digest() != self._digest(i):
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
        t0 = time.perf_counter()
        report = VerifyReport(num_images=len(self), deep=deep)
        shard_ok: dict[int, bool] = {}
        for number, shard in enumerate(self.shards):
            problem = self._shard_file_problem(number)
            if problem is not None:
                report.problems.append(problem)
                shard_ok[number] = problem.kind != "missing"
            else:
                shard_ok[number] = True
                if check_shard_hashes:
                    actual = sha256_file(self.path / shard.file)
                    if actual != shard.sha256:
                        report.problems.append(
                            VerifyProblem(
                                "shard-hash",
                                f"{shard.file}: sha256 does not match {HEADER_FILE}",
                                file=shard.file,
                            )
                        )
        for i in range(len(self)):
            snum = int(self._shard_of[i])
            sfile = self.shards[snum].file
            if not shard_ok[snum]:
                report.problems.append(
                    VerifyProblem("missing", f"image {i}: shard {sfile} is missing", i, sfile)
                )
                continue
            m = self._map(snum, i)
            offset, length = int(self._offset[i]), int(self._length[i])
            if offset + length > len(m):
                report.problems.append(
                    VerifyProblem(
                        "truncated", f"image {i}: beyond the end of truncated {sfile}", i, sfile
                    )
                )
                continue
            data = m[offset : offset + length]
            if hashlib.sha256(data).digest() != self._digest(i):
                report.problems.append(
                    VerifyProblem(
                        "hash",
                        f"image {i}: stored bytes in {sfile} do not match their sha256",
                        i,
                        sfile,
                    )
                )
                continue
            if deep:
                try:
                    img = Image.open(io.BytesIO(data))
                    img.load()
                except Exception as exc:  # Pillow raises many types for bad data
                    report.problems.append(
                        VerifyProblem("decode", f"image {i}: cannot decode ({exc})", i, sfile)
                    )
                    continue
                if pixel_digest(img) != self.entry(i).pixel_sha256:
                    report.problems.append(
                        VerifyProblem(
                            "pixels", f"image {i}: pixels do not match the manifest", i, sfile
                        )
                    )
                    continue
            report.num_checked += 1
            if progress is not None and (i + 1) % 4096 == 0:
                progress(i + 1, len(self))
        if progress is not None:
            progress(len(self), len(self))
        report.seconds = time.perf_counter() - t0
        return report

    # ---------------------------------------------------------------- internals
    def _digest(self, i: int) -> bytes:
        return self._digests[32 * i : 32 * i + 32]

    def _check_index(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < len(self._lines):
            raise IndexError(f"image index {index} out of range for a corpus of {len(self)}")
        return i

    def _shard_file_problem(self, number: int) -> VerifyProblem | None:
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

    def _map(self, shard: int, index: int) -> mmap.mmap:
        m = self._maps.get(shard)
        if m is None:
            p = self.path / self.shards[shard].file
            try:
                with p.open("rb") as f:
                    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except FileNotFoundError as exc:
                raise CorpusNotFoundError(f"image {index}: shard {p} is missing") from exc
            except ValueError as exc:  # empty file cannot be mapped
                raise CorpusCorruptError(f"image {index}: shard {p} is empty") from exc
            self._maps[shard] = m
        return m


def _source_runs(lines: list[bytes]) -> list[SourceInfo]:
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


def check_fingerprint(corpus: Corpus, expected: str) -> None:
    """Raise CorpusMismatchError unless the corpus is the expected one."""
    if corpus.fingerprint != expected:
        raise CorpusMismatchError(
            f"corpus {corpus.path} has fingerprint {corpus.fingerprint}, expected {expected}"
        )


__all__ = [
    "FORMAT_VERSION",
    "Corpus",
    "CorpusError",
    "ManifestEntry",
    "ShardInfo",
    "SourceInfo",
    "VerifyProblem",
    "VerifyReport",
    "check_fingerprint",
    "pixel_digest",
]
