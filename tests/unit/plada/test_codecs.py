"""Every selection codec reproduces every selection exactly; the encoder keeps the smallest."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plada.codecs import CODECS, decode_selection, encode_selection
from plada.codecs._bits import bit_length, pack_bits, unary_decode, unary_encode, unpack_bits
from plada.errors import PayloadDecodeError, PayloadError, PayloadValueError

CODEC_NAMES = sorted(CODECS)


@st.composite
def selections(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Random, clustered, dense and edge-case selections: (indices, labels, n, num_classes)."""
    n = draw(st.one_of(st.integers(1, 3000), st.sampled_from([2**16, 2**31 + 5, 2**32])))
    num_classes = draw(st.one_of(st.integers(1, 12), st.sampled_from([255, 256, 257, 1000])))
    k = draw(st.integers(0, min(n, 600)))
    shape = draw(st.sampled_from(["uniform", "clustered", "ends", "prefix"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if shape == "uniform" or k == 0:
        indices = rng.choice(n, size=k, replace=False) if n <= 10**6 else rng.integers(0, n, size=k)
    elif shape == "clustered":
        start = int(rng.integers(0, max(1, n - 2 * k)))
        indices = start + rng.choice(min(n - start, 2 * k), size=k, replace=False)
    elif shape == "ends":  # 0 and n - 1 with huge gaps between
        indices = np.concatenate(([0, n - 1], rng.integers(0, n, size=k)))
    else:  # a dense prefix: every index 0..k-1
        indices = np.arange(k)
    indices = np.unique(indices.astype(np.int64))[: max(k, 0)]
    if shape == "clustered" and len(indices):
        runs = rng.integers(1, 40, size=len(indices))
        labels = np.repeat(rng.integers(0, num_classes, size=len(runs)), runs)[: len(indices)]
    else:
        labels = rng.integers(0, num_classes, size=len(indices))
    return indices, labels.astype(np.int64), n, num_classes


@pytest.mark.parametrize("name", CODEC_NAMES)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=selections())
def test_codec_round_trips_any_selection(
    name: str, case: tuple[np.ndarray, np.ndarray, int, int]
) -> None:
    # Prepare
    indices, labels, n, num_classes = case
    # Execute
    chosen, data = encode_selection(indices, labels, n=n, num_classes=num_classes, codecs=[name])
    got_indices, got_labels = decode_selection(
        chosen, data, n=n, num_classes=num_classes, k=len(indices)
    )
    # Assert
    np.testing.assert_array_equal(got_indices, indices)
    np.testing.assert_array_equal(got_labels, labels)


@settings(max_examples=30, deadline=None)
@given(case=selections())
def test_encode_selection_keeps_smallest_codec(
    case: tuple[np.ndarray, np.ndarray, int, int],
) -> None:
    indices, labels, n, num_classes = case
    name, data = encode_selection(indices, labels, n=n, num_classes=num_classes)
    sizes = {
        other: len(
            encode_selection(indices, labels, n=n, num_classes=num_classes, codecs=[other])[1]
        )
        for other in CODECS
    }
    assert len(data) == min(sizes.values()) == sizes[name]


def test_encode_selection_beats_paper_codec_on_random_selection() -> None:
    rng = np.random.default_rng(0)
    indices = np.sort(rng.choice(200_000, size=2000, replace=False))
    labels = rng.integers(0, 10, size=2000)
    _, paper = encode_selection(indices, labels, n=200_000, num_classes=10, codecs=["paper"])
    name, best = encode_selection(indices, labels, n=200_000, num_classes=10)
    assert name != "paper"
    assert len(best) < 0.9 * len(paper)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_codec_decode_rejects_wrong_count(name: str) -> None:
    indices = np.array([1, 5, 9, 200], dtype=np.int64)
    labels = np.array([0, 1, 1, 0], dtype=np.int64)
    _, data = encode_selection(indices, labels, n=1000, num_classes=2, codecs=[name])
    with pytest.raises(PayloadError):
        decode_selection(name, data, n=1000, num_classes=2, k=5)


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_codec_decode_rejects_truncation_at_every_length(name: str) -> None:
    rng = np.random.default_rng(3)
    indices = np.sort(rng.choice(5000, size=300, replace=False))
    labels = rng.integers(0, 4, size=300)
    _, data = encode_selection(indices, labels, n=5000, num_classes=4, codecs=[name])
    for cut in range(len(data)):
        try:
            got, _ = decode_selection(name, data[:cut], n=5000, num_classes=4, k=300)
        except PayloadError:
            continue
        # a truncation that still decodes must decode to a valid selection of the right size
        assert len(got) == 300


def test_encode_selection_rejects_unknown_codec() -> None:
    with pytest.raises(PayloadValueError, match="unknown codec"):
        encode_selection(np.array([1]), np.array([0]), n=10, num_classes=1, codecs=["lzma"])


def test_decode_selection_rejects_unknown_codec() -> None:
    with pytest.raises(PayloadDecodeError, match="unknown codec"):
        decode_selection("lzma", b"", n=10, num_classes=1, k=0)


@given(
    values=st.lists(st.integers(0, 2**40), max_size=50),
    extra=st.lists(st.integers(0, 15), max_size=50),  # widths stay <= 56
)
def test_pack_bits_round_trips(values: list[int], extra: list[int]) -> None:
    v = np.array(values, dtype=np.int64)
    widths = bit_length(v) + np.resize(np.array(extra or [0], dtype=np.int64), len(v))
    data = pack_bits(v, widths)
    np.testing.assert_array_equal(unpack_bits(data, widths, field="t"), v)


@given(values=st.lists(st.integers(0, 300), max_size=40))
def test_unary_round_trips(values: list[int]) -> None:
    v = np.array(values, dtype=np.int64)
    np.testing.assert_array_equal(unary_decode(unary_encode(v), len(v), field="t"), v)


def test_bit_length_matches_python() -> None:
    values = [0, 1, 2, 3, 4, 255, 256, 2**31, 2**32, 2**33 - 1, 2**52 + 1]
    got = bit_length(np.array(values, dtype=np.int64))
    assert got.tolist() == [v.bit_length() for v in values]


def test_rice_decode_rejects_unary_bomb() -> None:
    # Prepare: one class of 3 indices, Rice parameter 0, then a megabyte of one bits
    from plada.codecs._bits import varint

    bomb = b"\xff" * 1_000_000
    data = varint(3) + bytes([0]) + varint(len(bomb)) + bomb
    # Execute / Assert
    with pytest.raises(PayloadDecodeError, match="unary terminators"):
        decode_selection("rice", data, n=10**9, num_classes=1, k=3)


def test_ans_decode_rejects_lane_count_not_implied_by_k() -> None:
    # A stream claiming one lane for many symbols would make the decoder loop per symbol.
    indices = np.arange(0, 40_000, 7, dtype=np.int64)
    labels = np.zeros(len(indices), dtype=np.int64)
    _, data = encode_selection(indices, labels, n=40_000, num_classes=1, codecs=["ans-class"])
    # counts varint (2 bytes for 5715) + order byte, then the lane count varint
    forged = data[:3] + bytes([1]) + data[4:]
    with pytest.raises(PayloadDecodeError, match="lanes"):
        decode_selection("ans-class", forged, n=40_000, num_classes=1, k=len(indices))


def test_paper_decode_rejects_duplicate_index() -> None:
    # Prepare: delta mode, uint8 deltas 3, 0, 2 (a repeated index), uint8 labels
    from plada.codecs._bits import zstd_compress

    data = bytes([0, 1]) + zstd_compress(bytes([3, 0, 2]) + bytes([0, 0, 0]))
    # Execute / Assert
    with pytest.raises(PayloadValueError, match=r"selection\.indices\[1\] = 3: duplicate"):
        decode_selection("paper", data, n=100, num_classes=1, k=3)


def test_paper_decode_checks_zstd_declared_size_before_decompressing() -> None:
    # Prepare: a 10 MB zero frame (tiny compressed) where the header implies 6 bytes
    import zstandard

    from plada.codecs._bits import zstd_compress
    from plada.errors import PayloadLimitError

    bomb = bytes([0, 1]) + zstd_compress(bytes(10_000_000))
    streamed = bytes([0, 1]) + zstandard.ZstdCompressor(write_content_size=False).compress(bytes(6))
    # Execute / Assert
    with pytest.raises(PayloadLimitError, match="declares 10000000 bytes"):
        decode_selection("paper", bomb, n=100, num_classes=1, k=3)
    with pytest.raises(PayloadDecodeError, match="content size"):
        decode_selection("paper", streamed, n=100, num_classes=1, k=3)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_ans_values_round_trip_with_each_context_order(order: int) -> None:
    # Prepare: dense runs of small gaps broken by long jumps, over several lanes
    from plada.codecs._bits import ByteReader
    from plada.codecs.ans import decode_values, encode_values

    rng = np.random.default_rng(order)
    values = np.where(
        rng.random(5000) < 0.05, rng.integers(1, 2**30, 5000), rng.integers(1, 4, 5000)
    )
    # Execute
    data = encode_values(values.astype(np.int64), orders=(order,))
    got = decode_values(ByteReader(data, field="t"), len(values))
    # Assert
    assert data[0] == order
    np.testing.assert_array_equal(got, values)


@pytest.mark.parametrize("k", [1, 1023, 1500, 5000, 40000])
@pytest.mark.parametrize("order", [0, 2])
def test_ans_scalar_and_vector_encoders_write_the_same_stream(k: int, order: int) -> None:
    # Prepare: symbols, contexts and tables exactly as encode_values makes them
    from plada.codecs import ans

    rng = np.random.default_rng(k + order)
    values = np.where(rng.random(k) < 0.1, rng.integers(1, 2**30, k), rng.integers(1, 6, k))
    sym, _, _ = ans.symbols_of(values.astype(np.int64))
    lanes = ans.lanes_for(k)
    starts, _ = ans._layout(k, lanes)
    ctx = ans._contexts(sym, starts, order)
    counts = np.zeros((1 if order == 0 else ans.NUM_CONTEXTS, ans.NUM_SYMBOLS), dtype=np.int64)
    np.add.at(counts, (ctx, sym), 1)
    freq = ans._quantise(counts)
    # Execute
    scalar_states, scalar_words = ans.rans_encode_scalar(sym, ctx, freq, lanes)
    vector_states, vector_words = ans.rans_encode_vector(sym, ctx, freq, lanes)
    # Assert: the same bytes, and they decode
    np.testing.assert_array_equal(scalar_states, vector_states)
    np.testing.assert_array_equal(scalar_words, vector_words)
    assert scalar_words.dtype == vector_words.dtype == np.uint16
    decoded = ans.rans_decode(scalar_states, scalar_words, freq, k, order, field="t")
    np.testing.assert_array_equal(decoded, sym)
