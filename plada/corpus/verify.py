"""Verifying a corpus image by image: every problem reported with its index or file, never raised.

Reads through what a Corpus exposes about its storage (StoredImages), so this module does not
import the reader that calls it.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from plada.corpus.header import HEADER_FILE, ShardInfo
from plada.corpus.manifest import ManifestEntry, pixel_digest
from plada.files import sha256_file


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


class StoredImages(Protocol):
    path: Path
    shards: list[ShardInfo]

    def __len__(self) -> int: ...

    def stored_at(self, i: int) -> tuple[int, int, int]: ...

    def stored_digest(self, i: int) -> bytes: ...

    def read_stored(self, shard: int, offset: int, length: int, index: int) -> bytes: ...

    def shard_file_problem(self, number: int) -> VerifyProblem | None: ...

    def entry(self, index: int) -> ManifestEntry: ...


def _check_shards(corpus: StoredImages, report: VerifyReport, *, hashes: bool) -> dict[int, bool]:
    """{shard number: its images can be read}; problems with whole shard files are reported."""
    readable: dict[int, bool] = {}
    for number, shard in enumerate(corpus.shards):
        problem = corpus.shard_file_problem(number)
        if problem is not None:
            report.problems.append(problem)
            readable[number] = problem.kind != "missing"
            continue
        readable[number] = True
        if hashes and sha256_file(corpus.path / shard.file) != shard.sha256:
            report.problems.append(
                VerifyProblem(
                    "shard-hash",
                    f"{shard.file}: sha256 does not match {HEADER_FILE}",
                    file=shard.file,
                )
            )
    return readable


def _image_problem(corpus: StoredImages, i: int, *, deep: bool) -> VerifyProblem | None:
    snum, offset, length = corpus.stored_at(i)
    sfile = corpus.shards[snum].file
    data = corpus.read_stored(snum, offset, length, i)
    if len(data) < length:
        return VerifyProblem(
            "truncated", f"image {i}: beyond the end of truncated {sfile}", i, sfile
        )
    if hashlib.sha256(data).digest() != corpus.stored_digest(i):
        return VerifyProblem(
            "hash", f"image {i}: stored bytes in {sfile} do not match their sha256", i, sfile
        )
    if not deep:
        return None
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except Exception as exc:  # Pillow raises many types for bad data
        return VerifyProblem("decode", f"image {i}: cannot decode ({exc})", i, sfile)
    if pixel_digest(img) != corpus.entry(i).pixel_sha256:
        return VerifyProblem("pixels", f"image {i}: pixels do not match the manifest", i, sfile)
    return None


def verify_corpus(
    corpus: StoredImages,
    *,
    deep: bool = False,
    check_shard_hashes: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    t0 = time.perf_counter()
    report = VerifyReport(num_images=len(corpus), deep=deep)
    readable = _check_shards(corpus, report, hashes=check_shard_hashes)
    for i in range(len(corpus)):
        snum = corpus.stored_at(i)[0]
        if not readable[snum]:
            sfile = corpus.shards[snum].file
            report.problems.append(
                VerifyProblem("missing", f"image {i}: shard {sfile} is missing", i, sfile)
            )
            continue
        problem = _image_problem(corpus, i, deep=deep)
        if problem is not None:
            report.problems.append(problem)
            continue
        report.num_checked += 1
        if progress is not None and (i + 1) % 4096 == 0:
            progress(i + 1, len(corpus))
    if progress is not None:
        progress(len(corpus), len(corpus))
    report.seconds = time.perf_counter() - t0
    return report
