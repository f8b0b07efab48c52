"""The paper's codec, exactly: sorted indices delta-coded in the smallest unsigned type, or a
bitmap over all N images when that compresses smaller, plus uint8/uint16 labels, all through
Zstd level 19.

Stream: mode byte (0 delta, 1 bitmap), delta width byte (1, 2, 4 or 8; 0 for bitmap), then one Zstd
frame holding the index part followed by the labels (little-endian, in index order).
"""

from __future__ import annotations

import numpy as np

from plada.codecs._bits import ByteReader, zstd_compress, zstd_decompress
from plada.codecs.base import label_width
from plada.errors import PayloadDecodeError, PayloadLimitError
from plada.limits import MAX_BITMAP_BYTES

_MODE_DELTA = 0
_MODE_BITMAP = 1
_WIDTHS = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}
# A bitmap is tried when it is at most 16x the raw delta bytes (it only wins when dense) or tiny.
_BITMAP_FLOOR = 64 * 1024


def _label_bytes(labels: np.ndarray, num_classes: int) -> bytes:
    return labels.astype(f"<u{label_width(num_classes)}").tobytes()


class PaperCodec:
    name = "paper"

    def encode(self, indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int) -> bytes:
        deltas = np.diff(indices, prepend=0)  # first delta is the first index itself
        top = int(deltas.max()) if len(deltas) else 0
        width = next(w for w in (1, 2, 4, 8) if top < 1 << (8 * w))
        tail = _label_bytes(labels, num_classes)
        delta = bytes([_MODE_DELTA, width]) + zstd_compress(
            deltas.astype(_WIDTHS[width]).tobytes() + tail
        )
        mask_bytes = (n + 7) // 8
        if mask_bytes > min(MAX_BITMAP_BYTES, max(_BITMAP_FLOOR, 16 * width * len(deltas))):
            return delta  # the bitmap cannot win (or would exceed the decode bound): skip it
        mask = np.zeros(n, dtype=np.uint8)
        mask[indices] = 1
        bitmap = bytes([_MODE_BITMAP, 0]) + zstd_compress(
            np.packbits(mask, bitorder="little").tobytes() + tail
        )
        return bitmap if len(bitmap) < len(delta) else delta

    def decode(
        self, data: bytes, *, n: int, num_classes: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        field = "selection.data (paper)"
        reader = ByteReader(data, field=field)
        mode, width = reader.byte(), reader.byte()
        lw = label_width(num_classes)
        if mode == _MODE_DELTA:
            if width not in _WIDTHS:
                raise PayloadDecodeError(f"{field}: delta width {width} is not 1, 2, 4 or 8")
            raw = zstd_decompress(reader.rest(), expected_size=k * (width + lw), field=field)
            deltas = np.frombuffer(raw, dtype=_WIDTHS[width], count=k).astype(np.uint64)
            if k and int(deltas.max()) >= n:
                raise PayloadDecodeError(f"{field}: delta over the corpus size {n}")
            indices = np.cumsum(deltas).astype(np.int64)  # <= k * n < 2**54
            label_raw = raw[k * width :]
        elif mode == _MODE_BITMAP:
            if width != 0:
                raise PayloadDecodeError(f"{field}: bitmap mode with delta width {width}")
            mask_bytes = (n + 7) // 8
            if mask_bytes > MAX_BITMAP_BYTES:
                raise PayloadLimitError(
                    f"{field}: bitmap of {mask_bytes} bytes, bound {MAX_BITMAP_BYTES}"
                )
            raw = zstd_decompress(reader.rest(), expected_size=mask_bytes + k * lw, field=field)
            bits = np.unpackbits(
                np.frombuffer(raw, dtype=np.uint8, count=mask_bytes), bitorder="little"
            )
            found = int(np.count_nonzero(bits))  # before flatnonzero allocates per set bit
            if found != k:
                raise PayloadDecodeError(f"{field}: bitmap has {found} bits set, expected {k}")
            indices = np.flatnonzero(bits).astype(np.int64)
            label_raw = raw[mask_bytes:]
        else:
            raise PayloadDecodeError(f"{field}: unknown mode {mode}")
        labels = np.frombuffer(label_raw, dtype=f"<u{lw}", count=k).astype(np.int64)
        return indices, labels
