"""Decode bounds for task payloads: sizes are checked against these before anything is allocated.

The numbers are generous for real payloads (the paper's 25 % of ImageNet-21K, 3.5 M indices,
fits) and small enough that a hostile payload cannot make a Raspberry Pi allocate more than a few
hundred MiB.
"""

from __future__ import annotations

MAX_PAYLOAD_BYTES = 8 * 1024 * 1024  # a whole signed envelope
MAX_CORPUS_SIZE = 2**32  # N: indices are < N and fit in uint32
MAX_INDICES = 2**22  # k: 4,194,304 (int64 arrays of 32 MiB each)
MAX_CLASSES = 65_536  # labels fit in uint16, the paper's widest label type
MAX_CLASS_NAME_BYTES = 256
MAX_TASK_NAME_CHARS = 64
MAX_NOTE_BYTES = 4096
MAX_SHORT_STRING_BYTES = 256  # builder_version, strategy, codec, key id, param keys
MAX_PARAM_STRING_BYTES = 1024
MAX_PARAMS = 64
MAX_CBOR_DEPTH = 8
MAX_CBOR_ITEMS = MAX_CLASSES + 1024
MAX_BITMAP_BYTES = 4 * 1024 * 1024  # paper codec bitmap mode: N <= 33.5 M images
# Images from outside (target folders, images to classify, probe folders) are refused before
# decoding when they declare more pixels than this: 50 MP covers phone, drone and DSLR cameras and
# decodes to 150 MB as RGB, while a 388 KB PNG declaring 20000 x 20000 would need 1.2 GB.
MAX_IMAGE_PIXELS = 50_000_000
MAX_CHUNKS = 1024  # manifest entries; 1024 x 128 KiB covers MAX_PAYLOAD_BYTES 16 times over


def scan_cbor(
    data: bytes,
    *,
    where: str,
    error: type[Exception],
    limit_error: type[Exception],
) -> None:
    """Walk CBOR item headers without building anything; reject what cbor2 must never see.

    Allowed: unsigned/negative ints, byte and text strings, arrays, maps, false/true/null and
    floats, all definite-length, nested at most MAX_CBOR_DEPTH, at most MAX_CBOR_ITEMS items.
    """
    pos, end, items = 0, len(data), 0
    pending = [1]  # items still to read at each open nesting level
    while pending:
        if pending[-1] == 0:
            pending.pop()
            continue
        pending[-1] -= 1
        if pos >= end:
            raise error(f"{where}: truncated CBOR at byte {pos}")
        initial = data[pos]
        pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            arg = info
        elif info <= 27:
            size = 1 << (info - 24)
            if pos + size > end:
                raise error(f"{where}: truncated CBOR at byte {pos}")
            arg = int.from_bytes(data[pos : pos + size], "big")
            pos += size
        else:
            raise error(f"{where}: indefinite-length or reserved CBOR item at byte {pos - 1}")
        items += 1
        if items > MAX_CBOR_ITEMS:
            raise limit_error(f"{where}: more than {MAX_CBOR_ITEMS} CBOR items")
        if major in (2, 3):
            if arg > end - pos:
                raise error(f"{where}: string of {arg} bytes runs past the end")
            pos += arg
        elif major in (4, 5):
            count = arg * (2 if major == 5 else 1)
            if count > end - pos:  # every item takes at least one byte
                raise error(f"{where}: container of {count} items runs past the end")
            if len(pending) >= MAX_CBOR_DEPTH:
                raise limit_error(f"{where}: CBOR nested deeper than {MAX_CBOR_DEPTH}")
            pending.append(count)
        elif major == 6:
            raise error(f"{where}: CBOR tags are not allowed (byte {pos - 1})")
        elif major == 7 and info not in (20, 21, 22, 25, 26, 27):
            raise error(f"{where}: CBOR simple value {info} is not allowed")
    if pos != end:
        raise error(f"{where}: {end - pos} trailing bytes after the CBOR item")
