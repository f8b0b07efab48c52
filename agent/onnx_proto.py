"""Small ONNX models serialised without the `onnx` package: the agent's two graphs (a head, one
training step) need nodes with int attributes, float32/int64 initialisers, tensor inputs and
outputs with fixed or named dimensions, an opset import and metadata, nothing more.

Why: `import onnx` (protobuf, ml_dtypes) took 1.5 s on one core of this machine, most of a
5,000-image payload's 2-4 s from payload to trained model on the Raspberry-Pi-4-like budget
(bench/device_budget.py); onnxruntime loads the serialised bytes directly. The bytes are the
protobuf wire format of onnx.proto (proto2: fields in field-number order, repeated scalars not
packed) exactly as `onnx.helper` + `SerializeToString` writes them (tests compare both).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

FLOAT = 1  # TensorProto.FLOAT
INT64 = 7  # TensorProto.INT64
_ATTR_INT = 2  # AttributeProto.INT
_DTYPES = {np.dtype(np.float32): FLOAT, np.dtype(np.int64): INT64}

Dim = int | str  # a fixed size or a named (symbolic) dimension


def _varint(value: int) -> bytes:
    if value < 0:  # int64 fields: two's complement in ten bytes
        value += 1 << 64
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _int(number: int, value: int) -> bytes:
    return _key(number, 0) + _varint(value)


def _bytes(number: int, value: bytes) -> bytes:
    return _key(number, 2) + _varint(len(value)) + value


def _str(number: int, value: str) -> bytes:
    return _bytes(number, value.encode("utf-8"))


@dataclass(frozen=True)
class Node:
    op_type: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    attributes: Mapping[str, int] = field(default_factory=dict)  # int attributes only

    def serialise(self) -> bytes:
        out = b"".join(_str(1, name) for name in self.inputs)
        out += b"".join(_str(2, name) for name in self.outputs)
        out += _str(4, self.op_type)
        for name, value in sorted(self.attributes.items()):  # onnx.helper sorts them too
            out += _bytes(5, _str(1, name) + _int(3, value) + _int(20, _ATTR_INT))
        return out


def tensor(name: str, array: np.ndarray) -> bytes:
    """A TensorProto initialiser (float32 or int64, raw little-endian data)."""
    array = np.asarray(array)
    dtype = _DTYPES.get(array.dtype)
    if dtype is None:
        raise ValueError(f"initialiser {name}: dtype {array.dtype} is not float32 or int64")
    out = b"".join(_int(1, d) for d in array.shape)
    out += _int(2, dtype) + _str(8, name)
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return out + _bytes(9, raw)


def value_info(name: str, shape: Sequence[Dim], elem_type: int = FLOAT) -> bytes:
    """A ValueInfoProto: a tensor of elem_type with these dimensions."""
    dims = b"".join(_bytes(1, _str(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    tensor_type = _int(1, elem_type) + _bytes(2, dims)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def model(
    *,
    nodes: Sequence[Node],
    name: str,
    inputs: Sequence[bytes],
    outputs: Sequence[bytes],
    initializers: Sequence[bytes],
    opset: int,
    ir_version: int,
    producer: str,
    metadata: Mapping[str, str] | None = None,
) -> bytes:
    """A serialised ModelProto with one graph (inputs/outputs from value_info, initialisers from
    tensor)."""
    graph = b"".join(_bytes(1, node.serialise()) for node in nodes)
    graph += _str(2, name)
    graph += b"".join(_bytes(5, t) for t in initializers)
    graph += b"".join(_bytes(11, v) for v in inputs)
    graph += b"".join(_bytes(12, v) for v in outputs)
    out = _int(1, ir_version) + _str(2, producer) + _bytes(7, graph)
    out += _bytes(8, _str(1, "") + _int(2, opset))
    for key, value in (metadata or {}).items():
        out += _bytes(14, _str(1, key) + _str(2, value))
    return out


def float32_scalar(name: str, value: float) -> bytes:
    return tensor(name, np.array(value, dtype=np.float32))
