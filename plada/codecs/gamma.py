"""Elias-gamma binarised gaps with the bucket stream (the bit length of each gap) through Zstd.

A gap g >= 1 is written as its bit length b = 1 + floor(log2 g) (one byte per gap, entropy-coded by
Zstd level 19, whose Huffman stage and match finder both pay off when selections cluster) and the
b - 1 bits below the leading one, stored raw.

Two layouts:
- `gamma-class`: per-class gap lists (labels implicit), like rice.
- `gamma-runs`: global gaps plus run-length-coded labels, for corpora stored grouped by class
  (synset order) where equal labels come in long runs.
"""

from __future__ import annotations

import numpy as np

from plada.codecs._bits import (
    ByteReader,
    bit_length,
    pack_bits,
    unpack_bits,
    varint,
    varints,
    zstd_compress,
    zstd_decompress,
)
from plada.codecs.base import global_gaps, group_by_class, label_runs, label_width, ungroup
from plada.errors import PayloadDecodeError

_MAX_BUCKET = 34  # gaps and run lengths are <= 2**33


def _split(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buckets = bit_length(values)  # (k,) 1..34 for values >= 1
    widths = buckets - 1
    return buckets, values - (np.int64(1) << widths), widths


def _join(buckets: np.ndarray, mantissa_data: bytes, *, field: str) -> np.ndarray:
    if len(buckets) and (int(buckets.min()) < 1 or int(buckets.max()) > _MAX_BUCKET):
        raise PayloadDecodeError(f"{field}: bit-length symbol out of range 1..{_MAX_BUCKET}")
    widths = buckets - 1
    values: np.ndarray = (np.int64(1) << widths) + unpack_bits(mantissa_data, widths, field=field)
    return values


class GammaClassCodec:
    name = "gamma-class"

    def encode(self, indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int) -> bytes:
        counts, gaps = group_by_class(indices, labels, num_classes)
        buckets, mantissa, widths = _split(gaps)
        packed = zstd_compress(buckets.astype(np.uint8).tobytes())
        return varints(counts) + varint(len(packed)) + packed + pack_bits(mantissa, widths)

    def decode(
        self, data: bytes, *, n: int, num_classes: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        field = "selection.data (gamma-class)"
        reader = ByteReader(data, field=field)
        counts = reader.varints(num_classes, limit=k)
        if int(counts.sum()) != k:
            raise PayloadDecodeError(f"{field}: class counts sum to {int(counts.sum())}, not {k}")
        packed = reader.take(reader.varint(limit=reader.remaining))
        raw = zstd_decompress(packed, expected_size=k, field=field)
        buckets = np.frombuffer(raw, dtype=np.uint8).astype(np.int64)
        gaps = _join(buckets, reader.rest(), field=field)
        return ungroup(counts, gaps, n=n, field=field)


class GammaRunsCodec:
    name = "gamma-runs"

    def encode(self, indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int) -> bytes:
        gaps = global_gaps(indices)
        run_lengths, run_labels = label_runs(labels)
        values = np.concatenate((gaps, run_lengths))
        buckets, mantissa, widths = _split(values)
        lw = label_width(num_classes)
        packed = zstd_compress(
            buckets.astype(np.uint8).tobytes() + run_labels.astype(f"<u{lw}").tobytes()
        )
        return varint(len(run_lengths)) + varint(len(packed)) + packed + pack_bits(mantissa, widths)

    def decode(
        self, data: bytes, *, n: int, num_classes: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        field = "selection.data (gamma-runs)"
        reader = ByteReader(data, field=field)
        num_runs = reader.varint(limit=k)
        if (num_runs == 0) != (k == 0):
            raise PayloadDecodeError(f"{field}: {num_runs} label runs for {k} indices")
        lw = label_width(num_classes)
        packed = reader.take(reader.varint(limit=reader.remaining))
        raw = zstd_decompress(packed, expected_size=k + num_runs * (1 + lw), field=field)
        buckets = np.frombuffer(raw, dtype=np.uint8, count=k + num_runs).astype(np.int64)
        run_labels = np.frombuffer(raw, dtype=f"<u{lw}", offset=k + num_runs).astype(np.int64)
        values = _join(buckets, reader.rest(), field=field)
        gaps, run_lengths = values[:k], values[k:]
        if int(run_lengths.sum()) != k:
            raise PayloadDecodeError(f"{field}: label runs cover {int(run_lengths.sum())}, not {k}")
        if k and int(gaps.max()) > n:
            raise PayloadDecodeError(f"{field}: gap over the corpus size {n}")
        indices = np.cumsum(gaps) - 1
        return indices, np.repeat(run_labels, run_lengths)
