"""Bit and byte plumbing shared by the codecs: varints, variable-width bit fields, bounded Zstd.

Everything here works on whole NumPy arrays (no per-element Python loop), and every reader checks a
declared length against the bytes actually present before it allocates anything.
"""

from __future__ import annotations

import numpy as np
import zstandard

from plada.errors import PayloadDecodeError, PayloadLimitError

ZSTD_LEVEL = 19


class ByteReader:
    """Reads a codec stream front to back; every read is bounds-checked and names `field`."""

    def __init__(self, data: bytes, *, field: str) -> None:
        self._data = data
        self._pos = 0
        self._field = field

    @property
    def field(self) -> str:
        return self._field

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def byte(self) -> int:
        if self._pos >= len(self._data):
            raise PayloadDecodeError(f"{self._field}: truncated (expected 1 more byte)")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def take(self, size: int) -> bytes:
        if size < 0 or size > self.remaining:
            raise PayloadDecodeError(
                f"{self._field}: truncated (needs {size} bytes, {self.remaining} left)"
            )
        out = self._data[self._pos : self._pos + size]
        self._pos += size
        return out

    def rest(self) -> bytes:
        return self.take(self.remaining)

    def varint(self, *, limit: int) -> int:
        """LEB128 unsigned integer, at most 10 bytes, rejected if over `limit`."""
        value = 0
        for shift in range(0, 70, 7):
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                if value > limit:
                    raise PayloadLimitError(f"{self._field}: value {value} over the bound {limit}")
                return value
        raise PayloadDecodeError(f"{self._field}: varint longer than 10 bytes")

    def varints(self, count: int, *, limit: int) -> np.ndarray:
        return np.array([self.varint(limit=limit) for _ in range(count)], dtype=np.int64)


def varint(value: int) -> bytes:
    if value < 0:
        raise ValueError(f"varint of a negative number {value}")
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varints(values: np.ndarray) -> bytes:
    return b"".join(varint(int(v)) for v in values)


def bit_length(values: np.ndarray) -> np.ndarray:
    """Number of significant bits of each non-negative value (0 -> 0), for values < 2**53."""
    v = values.astype(np.uint64)
    out = np.zeros(v.shape, dtype=np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        big = v >= (np.uint64(1) << np.uint64(shift))
        out[big] += shift
        v = np.where(big, v >> np.uint64(shift), v)
    out[v > 0] += 1
    return out


def pack_bits(values: np.ndarray, widths: np.ndarray) -> bytes:
    """Concatenate the `widths[i]` low bits of each `values[i]`, MSB first, zero-padded."""
    widths = widths.astype(np.int64)
    total = int(widths.sum())
    if total == 0:
        return b""
    owner = np.repeat(np.arange(len(widths)), widths)  # (total,) which value each bit belongs to
    starts = np.cumsum(widths) - widths
    shift = widths[owner] - 1 - (np.arange(total) - starts[owner])
    bits = (values.astype(np.uint64)[owner] >> shift.astype(np.uint64)) & np.uint64(1)
    return bytes(np.packbits(bits.astype(np.uint8)))


def unpack_bits(data: bytes, widths: np.ndarray, *, field: str) -> np.ndarray:
    """Inverse of pack_bits for widths <= 56: gathers 8 bytes per value, O(len(widths)) memory."""
    widths = widths.astype(np.int64)
    total = int(widths.sum())
    if (total + 7) // 8 != len(data):
        raise PayloadDecodeError(
            f"{field}: {len(data)} bytes of bit fields, expected {(total + 7) // 8}"
        )
    if len(widths) == 0:
        return np.zeros(0, dtype=np.int64)
    if int(widths.max()) > 56 or int(widths.min()) < 0:
        raise PayloadDecodeError(f"{field}: bit field width out of range 0..56")
    buf = np.frombuffer(data + bytes(8), dtype=np.uint8)
    starts = np.cumsum(widths) - widths
    byte_at = starts >> 3
    word = np.zeros(len(widths), dtype=np.uint64)
    for t in range(8):
        word = (word << np.uint64(8)) | buf[byte_at + t].astype(np.uint64)
    shift = (64 - (starts & 7) - widths).astype(np.uint64)
    mask = (np.uint64(1) << widths.astype(np.uint64)) - np.uint64(1)
    out: np.ndarray = ((word >> shift) & mask).astype(np.int64)
    return out


def zstd_compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True).compress(data)


def zstd_decompress(data: bytes, *, expected_size: int, field: str) -> bytes:
    """Decompress one Zstd frame whose declared content size must equal `expected_size`.

    The declared size is read from the frame header and compared *before* decompression, and the
    decompressor is capped at it, so a hostile frame cannot inflate past what the codec expects.
    """
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as exc:
        raise PayloadDecodeError(f"{field}: not a Zstd frame ({exc})") from exc
    if declared < 0:
        raise PayloadDecodeError(f"{field}: Zstd frame does not declare its content size")
    if declared != expected_size:
        raise PayloadLimitError(
            f"{field}: Zstd frame declares {declared} bytes, the header implies {expected_size}"
        )
    if expected_size == 0:
        # zstandard refuses a zero max_output_size; an empty frame needs no decompression
        return b""
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected_size)
    except zstandard.ZstdError as exc:
        raise PayloadDecodeError(f"{field}: corrupt Zstd data ({exc})") from exc
    if len(out) != expected_size:
        raise PayloadDecodeError(
            f"{field}: Zstd produced {len(out)} bytes, expected {expected_size}"
        )
    return out


def unary_decode(data: bytes, count: int, *, field: str) -> np.ndarray:
    """`count` unary numbers (q zero bits then a one); only zero padding may follow."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    found = int(np.count_nonzero(bits))  # before flatnonzero allocates 8 bytes per one bit
    if found != count:
        raise PayloadDecodeError(f"{field}: {found} unary terminators, expected {count}")
    ones = np.flatnonzero(bits)
    if count and (len(bits) - 1 - int(ones[-1])) >= 8:
        raise PayloadDecodeError(f"{field}: unary stream has trailing bytes")
    if count == 0:
        if len(data):
            raise PayloadDecodeError(f"{field}: unary stream has trailing bytes")
        return np.zeros(0, dtype=np.int64)
    return np.diff(ones, prepend=-1).astype(np.int64) - 1


def unary_encode(values: np.ndarray) -> bytes:
    values = values.astype(np.int64)
    if len(values) == 0:
        return b""
    total = int(values.sum()) + len(values)
    bits = np.zeros(total, dtype=np.uint8)
    bits[np.cumsum(values + 1) - 1] = 1
    return bytes(np.packbits(bits))
