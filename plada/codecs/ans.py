"""Context-modelled gaps through a vectorised rANS entropy coder (the strongest codec).

Binarisation: a gap g >= 1 becomes a symbol for its bit length b and, when b >= 2, the bit just
below the leading one (symbol 0 for g = 1, else 2 * (b - 1) - 1 + that bit: 67 symbols), plus the
remaining b - 2 bits stored raw. The symbol is coded with a semi-static model: one frequency table
(order 0), one per previous bit length (order 1, 35 contexts), or one per larger of the previous
two bit lengths (order 2, 35 contexts), whichever is smallest with its tables. Contexts are what pay
on clustered selections: inside a dense synset run small gaps follow small gaps, and the jump to
the next synset follows a long run; order 2 also remembers a jump one gap later.

Entropy coder: rANS with a 32-bit state, 16-bit renormalisation and 14-bit probabilities. The
symbol stream is cut into W contiguous segments, one per rANS lane (one lane per 1024 symbols, at
most 128), so that decoding advances all W lanes in one NumPy step: ceil(K / W) steps of
whole-array operations, no per-symbol Python. A lane's context comes from its own previous
symbols, so contexts never cross lanes. Each lane costs its 4-byte final state (~0.1-0.3 % of
the output).

Stream: order byte (0/1/2); varint W; tables; W final states (uint32 LE); varint word count; 16-bit
words (LE); raw low bits (the rest). Tables: per context, varint symbol mask (0 = unused), then
varint frequencies of all used symbols but the last, which makes the sum 2**14.
"""

from __future__ import annotations

import numpy as np

from plada.codecs._bits import ByteReader, bit_length, pack_bits, unpack_bits, varint, varints
from plada.codecs.base import global_gaps, group_by_class, label_runs, ungroup
from plada.errors import PayloadDecodeError

PROB_BITS = 14
_M = 1 << PROB_BITS
_L = 1 << 16  # lower bound of a lane state; states live in [2**16, 2**32)
NUM_SYMBOLS = 67  # bit lengths 1..34 with the next bit for b >= 2
NUM_CONTEXTS = 35  # previous bit length 1..34, or 0 at a segment start
_SYMBOLS_PER_LANE = 1024
_MAX_LANES = 128


def symbols_of(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values >= 1 -> (symbols, raw low bits, their widths)."""
    b = bit_length(values)
    widths = np.maximum(b - 2, 0)
    top = (values >> widths) & 1  # the bit below the leading one (garbage for b == 1, unused)
    sym = np.where(b == 1, 0, 2 * (b - 1) - 1 + top)
    low = values & ((np.int64(1) << widths) - 1)
    return sym.astype(np.int64), low, widths


def bucket_of(sym: np.ndarray) -> np.ndarray:
    """Bit length of the value behind each symbol: 0 -> 1, 1/2 -> 2, 3/4 -> 3, ..."""
    return np.where(sym == 0, 1, (sym + 1) // 2 + 1)


def values_of(sym: np.ndarray, low_data: bytes, *, field: str) -> np.ndarray:
    b = bucket_of(sym)
    widths = np.maximum(b - 2, 0)
    low = unpack_bits(low_data, widths, field=field)
    top = np.where(b == 1, 0, (sym + 1) % 2)  # sym 1 -> 0, sym 2 -> 1, ...
    lead = np.where(b == 1, 1, (2 + top) << widths)
    out: np.ndarray = lead + low
    return out


def lanes_for(k: int) -> int:
    """Lane count is a function of k alone, so a hostile stream cannot ask for one long lane."""
    return 0 if k == 0 else int(min(_MAX_LANES, max(1, k // _SYMBOLS_PER_LANE)))


def _layout(k: int, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """(segment starts, segment ends) for k symbols over `lanes` lanes, as even as possible.

    With k = q * W + r, the first r lanes get q + 1 symbols and the rest q, so every decoding step
    but the last advances all lanes at once.
    """
    if lanes == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    q, r = divmod(k, lanes)
    lengths = np.full(lanes, q, dtype=np.int64)
    lengths[:r] += 1
    ends = np.cumsum(lengths)
    return ends - lengths, ends


def _contexts(sym: np.ndarray, starts: np.ndarray, order: int) -> np.ndarray:
    """Context of each symbol: 0; the previous bit length (order 1); or the larger of the previous
    two (order 2). Bit lengths before a lane's start count as 0."""
    ctx = np.zeros(len(sym), dtype=np.int64)
    if order == 0 or len(sym) == 0:
        return ctx
    starts = starts[starts < len(sym)]
    prev1 = np.zeros(len(sym), dtype=np.int64)
    prev1[1:] = bucket_of(sym[:-1])
    prev1[starts] = 0
    if order == 1:
        return prev1
    prev2 = np.zeros(len(sym), dtype=np.int64)
    prev2[1:] = prev1[:-1]
    prev2[starts] = 0
    return np.maximum(prev1, prev2)


def _quantise(counts: np.ndarray) -> np.ndarray:
    """Counts (C, A) -> frequencies summing to 2**PROB_BITS per used context, >= 1 where used."""
    freq = np.zeros_like(counts)
    for c in np.flatnonzero(counts.sum(axis=1)):
        row = counts[c]
        f = np.where(row > 0, np.maximum(1, np.round(row * _M / row.sum())), 0).astype(np.int64)
        while int(f.sum()) != _M:  # fix rounding on the symbols that can spare it best
            diff = _M - int(f.sum())
            if diff > 0:
                f[int(np.argmax(row))] += diff
            else:
                spare = np.flatnonzero(f > 1)
                j = spare[int(np.argmax(f[spare]))]
                f[j] -= min(-diff, int(f[j]) - 1)
        freq[c] = f
    return freq


def _table_bytes(freq: np.ndarray) -> bytes:
    out = bytearray()
    for row in freq:
        used = np.flatnonzero(row)
        out += varint(sum(1 << int(s) for s in used))
        out += b"".join(varint(int(row[s])) for s in used[:-1])
    return bytes(out)


def _read_tables(reader: ByteReader, num_contexts: int) -> np.ndarray:
    freq = np.zeros((num_contexts, NUM_SYMBOLS), dtype=np.int64)
    for c in range(num_contexts):
        mask = reader.varint(limit=(1 << NUM_SYMBOLS) - 1)
        used = [s for s in range(NUM_SYMBOLS) if mask >> s & 1]
        if not used:
            continue
        for s in used[:-1]:
            freq[c, s] = reader.varint(limit=_M)
        last = _M - int(freq[c].sum())
        if last < 1 or int(freq[c, used[:-1]].min(initial=1)) < 1:
            raise PayloadDecodeError(f"{reader.field}: frequency table {c} does not sum to {_M}")
        freq[c, used[-1]] = last
    return freq


# Below this many lanes the encoder steps lane by lane in plain Python: with few lanes a NumPy
# step costs ~10 array operations on a handful of elements, and a payload of a few thousand
# indices (one to four lanes) took 0.25 s per codec call, 1 s for ans-class + ans-runs, which the
# builder pays for every candidate selection. Plain Python takes ~0.5 us per symbol. Both ways
# do the same integer arithmetic in the same order, so their bytes are identical (tested).
# Measured crossover: ~40 lanes (60,000 symbols: 0.56 s in Python, 0.42 s in NumPy).
SCALAR_LANES = 32


def rans_encode(
    sym: np.ndarray, ctx: np.ndarray, freq: np.ndarray, lanes: int
) -> tuple[np.ndarray, np.ndarray]:
    """-> (final lane states (W,) uint32, 16-bit words in decoding order)."""
    if lanes < SCALAR_LANES:
        return rans_encode_scalar(sym, ctx, freq, lanes)
    return rans_encode_vector(sym, ctx, freq, lanes)


def rans_encode_scalar(
    sym: np.ndarray, ctx: np.ndarray, freq: np.ndarray, lanes: int
) -> tuple[np.ndarray, np.ndarray]:
    """rans_encode one symbol at a time (few lanes); the same output as rans_encode_vector."""
    cum = np.cumsum(freq, axis=1) - freq
    starts, ends = _layout(len(sym), lanes)
    f_of = freq[ctx, sym].tolist()
    c_of = cum[ctx, sym].tolist()
    first, length = starts.tolist(), (ends - starts).tolist()
    steps = max(length, default=0)
    x = [_L] * lanes
    shift = 32 - PROB_BITS
    per_step: list[list[int]] = []
    for t in range(steps - 1, -1, -1):
        emitted = []
        for lane in range(lanes):
            if t >= length[lane]:  # lanes are longest first: the rest are done too
                break
            i = first[lane] + t
            f, xa = f_of[i], x[lane]
            if xa >= f << shift:
                emitted.append(xa & 0xFFFF)
                xa >>= 16
            x[lane] = ((xa // f) << PROB_BITS) + (xa % f) + c_of[i]
        per_step.append(emitted)
    words = np.fromiter((w for step in reversed(per_step) for w in step), dtype=np.uint16)
    return np.array(x, dtype=np.uint32), words


def rans_encode_vector(
    sym: np.ndarray, ctx: np.ndarray, freq: np.ndarray, lanes: int
) -> tuple[np.ndarray, np.ndarray]:
    """rans_encode with every lane advanced in one NumPy step (many lanes)."""
    cum = np.cumsum(freq, axis=1) - freq
    starts, ends = _layout(len(sym), lanes)
    steps = int((ends - starts).max()) if lanes else 0
    x = np.full(lanes, _L, dtype=np.uint64)
    per_step: list[np.ndarray] = []
    for t in range(steps - 1, -1, -1):
        active = np.flatnonzero(starts + t < ends)  # a prefix of the lanes
        i = starts[active] + t
        f = freq[ctx[i], sym[i]].astype(np.uint64)
        c = cum[ctx[i], sym[i]].astype(np.uint64)
        xa = x[active]
        emit = xa >= (f << np.uint64(32 - PROB_BITS))
        per_step.append((xa[emit] & np.uint64(0xFFFF)).astype(np.uint16))
        xa = np.where(emit, xa >> np.uint64(16), xa)
        x[active] = ((xa // f) << np.uint64(PROB_BITS)) + (xa % f) + c
    per_step.reverse()
    words = np.concatenate(per_step) if per_step else np.zeros(0, dtype=np.uint16)
    return x.astype(np.uint32), words


def rans_decode(
    states: np.ndarray,
    words: np.ndarray,
    freq: np.ndarray,
    k: int,
    order: int,
    *,
    field: str,
) -> np.ndarray:
    """Inverse of rans_encode: k symbols. All lanes advance together; tables are flat lookups."""
    # One function on purpose: the tables it builds feed a hot loop, and local names are what
    # keeps that loop fast in CPython.
    lanes = len(states)
    num_ctx = len(freq)
    cum = np.cumsum(freq, axis=1) - freq
    # flat (context, slot) tables; contexts without a table decode to the invalid NUM_SYMBOLS
    # (small dtypes: 5 bytes per entry, 2.9 MB for 35 contexts; NumPy widens on use)
    sym_t = np.full(num_ctx * _M, NUM_SYMBOLS, dtype=np.uint8)
    freq_t = np.zeros(num_ctx * _M, dtype=np.uint16)
    cum_t = np.zeros(num_ctx * _M, dtype=np.uint16)
    for c in np.flatnonzero(freq.sum(axis=1)):
        row = np.repeat(np.arange(NUM_SYMBOLS), freq[c])  # (M,)
        sym_t[c * _M : (c + 1) * _M] = row
        freq_t[c * _M : (c + 1) * _M] = freq[c][row]
        cum_t[c * _M : (c + 1) * _M] = cum[c][row]
    # bit length behind each symbol (the invalid symbol maps to 0); contexts are bit lengths
    bucket_t = np.zeros(NUM_SYMBOLS + 1, dtype=np.uint64)
    bucket_t[:NUM_SYMBOLS] = bucket_of(np.arange(NUM_SYMBOLS))
    m = np.uint64(_M)
    starts, ends = _layout(k, lanes)
    x = states.astype(np.uint64)
    if lanes and int(x.min()) < _L:
        raise PayloadDecodeError(f"{field}: rANS state below 2**16")
    out = np.zeros(k, dtype=np.int64)
    base = np.zeros(lanes, dtype=np.uint64)  # context * M of each lane's next symbol
    last = np.zeros(lanes, dtype=np.uint64)  # bit length of each lane's last symbol (order 2)
    words64 = words.astype(np.uint64)
    pos = 0
    mask, shift, low = np.uint64(_M - 1), np.uint64(PROB_BITS), np.uint64(_L)
    sixteen = np.uint64(16)
    full = int((ends - starts).min()) if lanes else 0
    steps = int((ends - starts).max()) if lanes else 0
    for t in range(steps):
        if t < full:
            xa, ba = x, base
        else:  # the one ragged last step: only the first r lanes
            active = np.flatnonzero(starts + t < ends)
            xa, ba = x[active], base[active]
        slot = xa & mask
        idx = (ba + slot).astype(np.intp)
        s = sym_t[idx]
        xa = freq_t[idx] * (xa >> shift) + slot - cum_t[idx]
        need = xa < low
        count = int(np.count_nonzero(need))
        if count:
            if pos + count > len(words64):
                raise PayloadDecodeError(f"{field}: rANS word stream ends early")
            xa[need] = (xa[need] << sixteen) | words64[pos : pos + count]
            pos += count
        b = bucket_t[s]
        if order == 0:
            nb = ba
        elif order == 1:
            nb = b * m
        else:
            la = last if t < full else last[active]
            nb = np.maximum(b, la) * m
        if t < full:
            x, base, last = xa, nb, b
            out[starts + t] = s
        else:
            x[active], base[active], last[active] = xa, nb, b
            out[starts[active] + t] = s
    if k and int(out.max()) >= NUM_SYMBOLS:
        raise PayloadDecodeError(f"{field}: symbol in a context without a frequency table")
    if pos != len(words64) or (lanes and (int(x.max()) != _L or int(x.min()) != _L)):
        raise PayloadDecodeError(f"{field}: rANS stream does not end where it should (corrupt)")
    return out


def encode_values(values: np.ndarray, *, orders: tuple[int, ...] = (0, 1, 2)) -> bytes:
    """Values >= 1 -> the stream described in the module docstring (smallest context order)."""
    k = len(values)
    sym, low, widths = symbols_of(values)
    lanes = lanes_for(k)
    starts, _ = _layout(k, lanes)
    candidates: list[bytes] = []
    for order in orders:
        ctx = _contexts(sym, starts, order)
        num_ctx = 1 if order == 0 else NUM_CONTEXTS
        counts = np.zeros((num_ctx, NUM_SYMBOLS), dtype=np.int64)
        np.add.at(counts, (ctx, sym), 1)
        freq = _quantise(counts)
        states, words = rans_encode(sym, ctx, freq, lanes)
        stream = (
            bytes([order])
            + varint(lanes)
            + _table_bytes(freq)
            + states.astype("<u4").tobytes()
            + varint(len(words))
            + words.astype("<u2").tobytes()
        )
        candidates.append(stream)
    return min(candidates, key=len) + pack_bits(low, widths)


def decode_values(reader: ByteReader, k: int) -> np.ndarray:
    field = reader.field
    order = reader.byte()
    if order not in (0, 1, 2):
        raise PayloadDecodeError(f"{field}: context order {order} is not 0, 1 or 2")
    lanes = reader.varint(limit=_MAX_LANES)
    if lanes != lanes_for(k):  # also caps the decode loop at ~32k NumPy steps for any k
        raise PayloadDecodeError(f"{field}: {lanes} rANS lanes for {k} symbols")
    freq = _read_tables(reader, 1 if order == 0 else NUM_CONTEXTS)
    states = np.frombuffer(reader.take(4 * lanes), dtype="<u4")
    num_words = reader.varint(limit=reader.remaining // 2)
    words = np.frombuffer(reader.take(2 * num_words), dtype="<u2")
    sym = rans_decode(states, words, freq, k, order, field=field)
    return values_of(sym, reader.rest(), field=field)


class AnsClassCodec:
    """Per-class gap lists through the context-modelled rANS coder."""

    name = "ans-class"

    def encode(self, indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int) -> bytes:
        counts, gaps = group_by_class(indices, labels, num_classes)
        return varints(counts) + encode_values(gaps)

    def decode(
        self, data: bytes, *, n: int, num_classes: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        reader = ByteReader(data, field="selection.data (ans-class)")
        counts = reader.varints(num_classes, limit=k)
        if int(counts.sum()) != k:
            raise PayloadDecodeError(
                f"{reader.field}: class counts sum to {int(counts.sum())}, not {k}"
            )
        gaps = decode_values(reader, k)
        return ungroup(counts, gaps, n=n, field=reader.field)


class AnsRunsCodec:
    """Global gaps + label runs (run lengths and run labels), each through the rANS coder."""

    name = "ans-runs"

    def encode(self, indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int) -> bytes:
        run_lengths, run_labels = label_runs(labels)
        parts = [encode_values(global_gaps(indices)), encode_values(run_lengths)]
        body = [varint(len(run_lengths))]
        for part in parts:
            body += [varint(len(part)), part]
        return b"".join(body) + encode_values(run_labels + 1)

    def decode(
        self, data: bytes, *, n: int, num_classes: int, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        reader = ByteReader(data, field="selection.data (ans-runs)")
        field = reader.field
        num_runs = reader.varint(limit=k)
        if (num_runs == 0) != (k == 0):
            raise PayloadDecodeError(f"{field}: {num_runs} label runs for {k} indices")
        parts = []
        for count in (k, num_runs):
            part = ByteReader(reader.take(reader.varint(limit=reader.remaining)), field=field)
            parts.append(decode_values(part, count))
        gaps, run_lengths = parts
        run_labels = decode_values(reader, num_runs) - 1
        if int(run_lengths.sum()) != k:
            raise PayloadDecodeError(f"{field}: label runs cover {int(run_lengths.sum())}, not {k}")
        if k and int(gaps.max()) > n:
            raise PayloadDecodeError(f"{field}: gap over the corpus size {n}")
        indices: np.ndarray = np.cumsum(gaps) - 1
        return indices, np.repeat(run_labels, run_lengths)
