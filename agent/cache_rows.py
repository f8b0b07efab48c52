"""Sparse rows of the feature cache: features computed on demand for a payload, kept by index.

A block holds 1,024 consecutive images, so the 20,000 random indices of a payload over a 1M-image
corpus touch nearly all of its ~980 blocks: filling them would embed the whole corpus, and
reading them for a warm apply would read 2.5 GB. The rows a payload needed are instead stored as
one *segment*, and the next apply of the same or overlapping indices reads only those rows.

A segment ``rows-<sha256 of its indices, 16 hex>.bin``::

    magic        b"\\x00plada-rows-1\\x00" (14 bytes)
    header       count k (u64), feature dim D (u32), itemsize (u32: 2 float16, 4 float32)
    indices      (k,) u64, ascending
    row digests  (k, 8) bytes: blake2b-64 of each row's bytes
    table hash   sha256 of header + indices + row digests (32 bytes)
    features     (k, D) little-endian float16/float32

It is written in one atomic rename (plada.atomic). A read checks the table hash, the file size,
and the digest and finiteness of every row it returns; a segment failing any check is deleted (its
rows count as missing and are embedded again), never trusted. Rows are read with one pread each,
not mapped, so a warm apply holds only the rows it asked for. At most `max_segments` are kept;
adding one more deletes the least recently written (a cache may forget).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from pathlib import Path

import numpy as np

from plada.atomic import write_bytes_atomic

logger = logging.getLogger(__name__)

_MAGIC = b"\x00plada-rows-1\x00"
_HEADER = struct.Struct("<QII")
_ROW_DIGEST = 8
DEFAULT_MAX_SEGMENTS = 8
SEGMENT_GLOB = "rows-*.bin"  # every segment file's name


def _row_digest(row: bytes | memoryview) -> bytes:
    return hashlib.blake2b(row, digest_size=_ROW_DIGEST).digest()


class _Segment:
    """One segment file's checked table: where each of its rows is."""

    def __init__(self, path: Path, indices: np.ndarray, digests: bytes, features_at: int) -> None:
        self.path = path
        self.indices = indices  # (k,) int64 ascending
        self.digests = digests  # k * 8 bytes
        self.features_at = features_at  # file offset of row 0


class RowFiles:
    """Reads and writes checked row segments in one cache folder (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        *,
        dim: int,
        dtype: np.dtype,
        max_segments: int = DEFAULT_MAX_SEGMENTS,
    ) -> None:
        if max_segments < 1:
            raise ValueError(f"max_segments must be >= 1, got {max_segments}")
        self.folder = folder
        self._dim = dim
        self._dtype = np.dtype(dtype).newbyteorder("<")
        self._row_bytes = dim * self._dtype.itemsize
        self.max_segments = max_segments

    def segments(self) -> list[Path]:
        """Segment files, newest first (by modification time, then name)."""
        found = [p for p in self.folder.glob(SEGMENT_GLOB) if p.is_file()]
        return sorted(found, key=lambda p: (-p.stat().st_mtime_ns, p.name))

    # ------------------------------------------------------------------ read
    def read(self, indices: np.ndarray, out: np.ndarray, have: np.ndarray) -> int:
        """Fill `out[j]` (float32, (k, D)) for every `indices[j]` not yet `have[j]` that a segment
        holds, set `have[j]`; returns how many rows were read. Damaged segments are deleted."""
        filled = 0
        for path in self.segments():
            if have.all():
                break
            segment = self._open(path)
            if segment is None:
                continue
            wanted = np.flatnonzero(~have)
            pos = np.searchsorted(segment.indices, indices[wanted])
            pos_clipped = np.minimum(pos, max(segment.indices.size - 1, 0))
            hit = (pos < segment.indices.size) & (segment.indices[pos_clipped] == indices[wanted])
            if not hit.any():
                continue
            if not self._read_rows(segment, pos[hit], out, wanted[hit]):
                continue  # dropped: its rows stay missing (any written are overwritten later)
            have[wanted[hit]] = True
            filled += int(hit.sum())
        return filled

    def _open(self, path: Path) -> _Segment | None:
        try:
            with path.open("rb") as file:
                head = file.read(len(_MAGIC) + _HEADER.size)
                if len(head) < len(_MAGIC) + _HEADER.size or not head.startswith(_MAGIC):
                    self._drop(path, "no segment header")
                    return None
                count, dim, itemsize = _HEADER.unpack_from(head, len(_MAGIC))
                if dim != self._dim or itemsize != self._dtype.itemsize:
                    self._drop(path, f"rows of {dim} x {itemsize} bytes are not expected")
                    return None
                table_bytes = count * (8 + _ROW_DIGEST)
                size = file.seek(0, os.SEEK_END)
                features_at = len(head) + table_bytes + 32
                if size != features_at + count * self._row_bytes:
                    self._drop(path, f"{size} bytes do not fit {count} rows")
                    return None
                file.seek(len(head))
                table = file.read(table_bytes + 32)
        except OSError as exc:
            self._drop(path, f"unreadable ({exc})")
            return None
        if hashlib.sha256(head[len(_MAGIC) :] + table[:-32]).digest() != table[-32:]:
            self._drop(path, "its index table does not match its checksum")
            return None
        indices = np.frombuffer(table, dtype="<u8", count=count).astype(np.int64)
        if count > 1 and not bool((np.diff(indices) > 0).all()):
            self._drop(path, "its indices are not ascending")
            return None
        return _Segment(path, indices, table[8 * count : table_bytes], features_at)

    def _read_rows(
        self, segment: _Segment, positions: np.ndarray, out: np.ndarray, targets: np.ndarray
    ) -> bool:
        """out[targets[j]] = the segment's row positions[j] (float32), each checked; written
        straight into `out` (a 20,000-row temporary would be another 100 MB on a device).
        False if the segment was dropped."""
        size = self._row_bytes
        try:
            fd = os.open(segment.path, os.O_RDONLY)
        except OSError as exc:
            self._drop(segment.path, f"unreadable ({exc})")
            return False
        try:
            for p, t in zip(positions.tolist(), targets.tolist(), strict=True):
                data = os.pread(fd, size, segment.features_at + p * size)
                if _row_digest(data) != segment.digests[p * _ROW_DIGEST : (p + 1) * _ROW_DIGEST]:
                    self._drop(segment.path, f"row {p} does not match its checksum")
                    return False
                row = out[t]
                row[:] = np.frombuffer(data, dtype=self._dtype)
                if not bool(np.isfinite(row).all()):
                    self._drop(segment.path, "it holds NaN or infinite features")
                    return False
        except OSError as exc:
            self._drop(segment.path, f"unreadable ({exc})")
            return False
        finally:
            os.close(fd)
        return True

    # ------------------------------------------------------------------ write
    def write(self, indices: np.ndarray, features: np.ndarray) -> Path | None:
        """Store rows (features already in the cache dtype, one per index) as a new segment,
        evicting the oldest beyond max_segments. Nothing is written for no rows."""
        order = np.argsort(indices, kind="stable")
        idx = np.asarray(indices, dtype=np.int64)[order]
        keep = np.ones(idx.size, dtype=bool)
        keep[1:] = idx[1:] != idx[:-1]  # a payload may name an index twice: store it once
        idx = idx[keep]
        rows = np.ascontiguousarray(np.asarray(features)[order][keep], dtype=self._dtype)
        if idx.size == 0:
            return None
        if rows.shape != (idx.size, self._dim) or not bool(np.isfinite(rows).all()):
            raise ValueError(f"refusing to cache rows of shape {rows.shape} or non-finite rows")
        index_bytes = idx.astype("<u8").tobytes()
        digests = b"".join(_row_digest(row.tobytes()) for row in rows)
        header = _HEADER.pack(idx.size, self._dim, self._dtype.itemsize)
        table_hash = hashlib.sha256(header + index_bytes + digests).digest()
        name = f"rows-{hashlib.sha256(index_bytes).hexdigest()[:16]}.bin"
        path = self.folder / name
        data = b"".join((_MAGIC, header, index_bytes, digests, table_hash, rows.tobytes()))
        write_bytes_atomic(path, data)
        for old in self.segments()[self.max_segments :]:
            old.unlink(missing_ok=True)
        return path

    def _drop(self, path: Path, why: str) -> None:
        logger.warning("feature cache rows %s dropped, to be recomputed: %s", path.name, why)
        path.unlink(missing_ok=True)
