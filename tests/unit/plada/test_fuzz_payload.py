"""Fuzz: mutated and truncated payloads either decode to a valid payload or raise PayloadError.

Three layers are mutated so that the damage reaches every decoder: the raw envelope bytes, the body
bytes (re-wrapped unsigned), and the codec stream inside an otherwise valid body. Seeded, so a
failure reproduces; ~11,000 cases in a few seconds.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import cbor2
import numpy as np
import pytest

from plada.chunks import Reassembler, split_payload
from plada.codecs import CODECS, check_selection
from plada.errors import ChunkError, PayloadError
from plada.payload import decode_payload, encode_payload
from tests.unit.plada.payload_helpers import make_payload

CASES_PER_LAYER = 620  # x 3 layers x 6 codecs = 11,160 cases


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    kind = rng.randrange(6)
    if kind == 0 or not buf:  # truncate
        return bytes(buf[: rng.randrange(len(buf) + 1)])
    pos = rng.randrange(len(buf))
    if kind == 1:  # flip one bit
        buf[pos] ^= 1 << rng.randrange(8)
    elif kind == 2:  # overwrite a few bytes
        for i in range(pos, min(len(buf), pos + rng.randint(1, 8))):
            buf[i] = rng.randrange(256)
    elif kind == 3:  # insert bytes
        buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
    elif kind == 4:  # delete bytes
        del buf[pos : pos + rng.randint(1, 8)]
    else:  # interesting values: 0x00, 0xff, CBOR length prefixes
        buf[pos] = rng.choice([0x00, 0xFF, 0x1B, 0x5B, 0x7B, 0x9B, 0xBB, 0xDB, 0x80, 0x7F])
    return bytes(buf)


def _check(data: bytes) -> None:
    try:
        payload = decode_payload(data, trusted_keys={}, allow_unsigned=True)
    except PayloadError:
        return
    check_selection(
        payload.indices, payload.labels, n=payload.corpus.size, num_classes=payload.num_classes
    )


def _wrap(body: bytes) -> bytes:
    return cbor2.dumps({"format": 1, "body": body}, canonical=True)


def _layers(data: bytes) -> dict[str, Callable[[random.Random], bytes]]:
    body_bytes = cbor2.loads(data)["body"]
    body = cbor2.loads(body_bytes)

    def selection(rng: random.Random) -> bytes:
        sel = dict(body["selection"], data=_mutate(body["selection"]["data"], rng))
        return _wrap(cbor2.dumps(dict(body, selection=sel), canonical=True))

    return {
        "envelope": lambda rng: _mutate(data, rng),
        "body": lambda rng: _wrap(_mutate(body_bytes, rng)),
        "selection": selection,
    }


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_fuzz_mutated_payloads_decode_or_raise_payload_error(codec: str) -> None:
    # Prepare: a clustered selection so that every codec has runs and gaps of all sizes
    payload = make_payload(n=6000, k=240, num_classes=5, seed=11)
    labels = np.repeat(np.arange(5), 48)
    payload = type(payload)(**{**payload.__dict__, "labels": labels})
    data = encode_payload(payload, signing_key=None, codecs=[codec])
    rng = random.Random(f"fuzz-{codec}")
    layers = _layers(data)
    # Execute / Assert: _check raises anything that is not a PayloadError
    for _ in range(CASES_PER_LAYER):
        for mutate in layers.values():
            _check(mutate(rng))


def test_fuzz_mutated_chunks_raise_chunk_error_or_reassemble_exactly() -> None:
    # Prepare
    data = random.Random(5).randbytes(6000)
    parts = split_payload(data, max_chunk_bytes=2048)
    rng = random.Random("fuzz-chunks")
    # Execute / Assert
    for _ in range(1500):
        reassembler = Reassembler()
        messages = [parts.manifest, *parts.chunks]
        victim = rng.randrange(len(messages))
        messages[victim] = _mutate(messages[victim], rng)
        for i, message in enumerate(messages):
            try:
                if i == 0:
                    reassembler.add_manifest(message)
                else:
                    reassembler.add_chunk(message)
            except ChunkError:
                continue
        if reassembler.is_complete():
            try:  # a manifest with a forged size or hash completes but must not verify
                joined = reassembler.payload()
            except ChunkError:
                continue
            assert joined == data


# A view carrying every operation: the fuzz reaches each op's type and bound checks.
FUZZ_VIEW_OPS: list[dict[str, int | str]] = [
    {"op": "grayscale"},
    {"op": "polarity", "background": "dark"},
    {"op": "crop_content", "threshold": 64, "margin": 5, "square": 1},
    {"op": "pad", "margin": 10, "fill": 0},
    {"op": "autocontrast", "cutoff": 2},
    {"op": "resize", "size": 8, "filter": "box"},
    {"op": "quantize", "levels": 17},
    {"op": "invert"},
]


def _view_values(rng: random.Random) -> object:
    return rng.choice(
        [-1, 0, 1, 2, 49, 50, 51, 255, 256, 1024, 1025, 2**64 - 1, -(2**63), True, None, 1.5,
         "box", "dark", "light", "bilinear", "", "x" * 300, b"\x00", [], {}]
    )  # fmt: skip


def _mutate_view(view: dict[str, object], rng: random.Random) -> dict[str, object]:
    """Structural damage to the decoded view: values, keys, op names, versions, lengths."""
    ops = [dict(op) for op in view["ops"]]  # type: ignore[attr-defined]
    out: dict[str, object] = dict(view, ops=ops)
    kind = rng.randrange(7)
    op = rng.choice(ops)
    if kind == 0:  # a parameter gets a hostile value
        op[rng.choice(sorted(op))] = _view_values(rng)
    elif kind == 1:  # a parameter goes missing
        del op[rng.choice(sorted(op))]
    elif kind == 2:  # an unknown parameter
        op[rng.choice(["code", "size", "levels", "zzz"])] = _view_values(rng)
    elif kind == 3:  # an unknown or misspelled op
        op["op"] = rng.choice(["blur", "Resize", "", "exec", 7])
    elif kind == 4:  # the version or the top-level keys
        out[rng.choice(["version", "ops", "extra"])] = _view_values(rng)
    elif kind == 5:  # too many or no ops
        out["ops"] = ops * rng.choice([0, 2, 3])
    else:  # shuffle: still valid, must decode to the shuffled order
        rng.shuffle(ops)
    return out


def test_fuzz_view_field_decodes_or_raises_payload_error() -> None:
    # Prepare
    from plada.views import view_from_ops

    payload = make_payload(n=6000, k=240, num_classes=5, seed=12)
    payload = type(payload)(**{**payload.__dict__, "view": view_from_ops(FUZZ_VIEW_OPS)})
    data = encode_payload(payload, signing_key=None)
    body = cbor2.loads(cbor2.loads(data)["body"])
    rng = random.Random("fuzz-view")
    decoded_ok = 0
    # Execute / Assert: structural mutations of the view, then byte mutations of the body
    for _ in range(2000):
        mutated = dict(body, view=_mutate_view(body["view"], rng))
        wrapped = _wrap(cbor2.dumps(mutated, canonical=True))
        try:
            got = decode_payload(wrapped, trusted_keys={}, allow_unsigned=True)
        except PayloadError:
            continue
        decoded_ok += 1
        assert got.view is not None and got.view.to_obj() == mutated["view"]
    body_bytes = cbor2.dumps(body, canonical=True)
    for _ in range(2000):
        _check(_wrap(_mutate(body_bytes, rng)))
    assert 0 < decoded_ok < 2000  # both outcomes were reached
