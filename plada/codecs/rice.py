"""Golomb-Rice gaps, per class: near-optimal for uniformly scattered indices.

Each class's sorted indices become gaps >= 1; v = gap - 1 is split into q = v >> r (unary) and the
r low bits. For a geometric gap distribution (uniform random selection) the best power-of-two Rice
parameter is within ~0.03 bit per gap of the entropy, so the per-class lists sum to about
log2 C(N, k) + k * H(labels), the bound. Unary parts and low bits live in two separate streams so
that decoding is a handful of whole-array NumPy operations.

Stream: C varint class counts; one byte r per non-empty class; varint length of the unary stream;
the unary stream; the low-bit stream (the rest).
"""

from __future__ import annotations

import numpy as np

from plada.codecs._bits import (
    ByteReader,
    pack_bits,
    unary_decode,
    unary_encode,
    unpack_bits,
    varint,
    varints,
)
from plada.codecs.base import group_by_class, ungroup
from plada.errors import PayloadDecodeError

_MAX_PARAM = 32


def best_rice_param(values: np.ndarray) -> int:
    """The r minimising len * (1 + r) + sum(values >> r)."""
    if len(values) == 0:
        return 0
    costs = [len(values) * (1 + r) + int((values >> r).sum()) for r in range(_MAX_PARAM + 1)]
    return int(np.argmin(costs))


class RiceCodec:
    name = "rice"

    def encode(self, indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int) -> bytes:
        counts, gaps = group_by_class(indices, labels, num_classes)
        values = gaps - 1
        ends = np.cumsum(counts)
        params = np.zeros(num_classes, dtype=np.int64)
        for c in np.flatnonzero(counts):
            params[c] = best_rice_param(values[ends[c] - counts[c] : ends[c]])
        widths = np.repeat(params, counts)  # (k,)
        unary = unary_encode(values >> widths)
        low = pack_bits(values & ((1 << widths) - 1), widths)
        header = varints(counts) + bytes(params[counts > 0].astype(np.uint8))
        return header + varint(len(unary)) + unary + low

    def decode(
        self, data: bytes, *, n: int, num_classes: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        field = "selection.data (rice)"
        reader = ByteReader(data, field=field)
        counts = reader.varints(num_classes, limit=k)
        if int(counts.sum()) != k:
            raise PayloadDecodeError(f"{field}: class counts sum to {int(counts.sum())}, not {k}")
        nonempty = int((counts > 0).sum())
        params = np.zeros(num_classes, dtype=np.int64)
        params[counts > 0] = np.frombuffer(reader.take(nonempty), dtype=np.uint8)
        if nonempty and int(params.max()) > _MAX_PARAM:
            raise PayloadDecodeError(f"{field}: Rice parameter over {_MAX_PARAM}")
        unary = reader.take(reader.varint(limit=reader.remaining))
        widths = np.repeat(params, counts)  # (k,)
        high = unary_decode(unary, k, field=field)
        low = unpack_bits(reader.rest(), widths, field=field)
        if k and int(high.max()) > n:  # keeps (high << width) far from int64 overflow
            raise PayloadDecodeError(f"{field}: gap over the corpus size {n}")
        gaps = (high << widths) + low + 1
        return ungroup(counts, gaps, n=n, field=field)
