"""The leanest way to send labelled images to a device: each image at most the device encoder's
input size, encoded (JPEG q30, PNG or raw pixels), a small header per image, the whole pack
Zstd-19 compressed. bench/alternatives.py measures what such packs teach at equal bytes; the field
trial (tools/trial) sends one over emulated links as the images alternative to a PLADA payload.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import zstandard
from PIL import Image

ZSTD_LEVEL = 19


def device_sized(image: Image.Image, size: int) -> Image.Image:
    """L or RGB, at most size x size (the device resizes to size x size anyway)."""
    mode = "L" if image.mode in ("L", "1", "I;16", "I") else "RGB"
    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    image = image.convert(mode)
    if max(image.size) > size:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def encode_image(image: Image.Image, fmt: str) -> bytes:
    if fmt == "raw":
        return image.tobytes()
    buffer = io.BytesIO()
    if fmt == "jpeg-q30":
        image.save(buffer, format="JPEG", quality=30)
    elif fmt == "png":
        image.save(buffer, format="PNG", optimize=True)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buffer.getvalue()


def pack_images(images: Sequence[Image.Image], labels: Sequence[int], fmt: str) -> bytes:
    """Label (1 B), width and height (1 B each, raw) or length (2 B, JPEG/PNG), then the data;
    everything Zstd-19 compressed."""
    parts = []
    for image, label in zip(images, labels, strict=True):
        body = encode_image(image, fmt)
        if fmt == "raw":
            head = bytes([label, image.size[0] % 256, image.size[1] % 256])
        else:
            head = bytes([label]) + len(body).to_bytes(2, "little")
        parts.append(head + body)
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(b"".join(parts))
