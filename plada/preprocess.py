"""Image -> encoder input: the one definition every backend uses (torch, ONNX, TFLite).

EfficientNet-Lite was trained with TF-style scaling (x - 127) / 128 on RGB 0..255; that scored 17/20
top-1 on real ImageNet images where ImageNet mean/std did slightly worse (see shared/docs/data.md).
Resizing is done here with Pillow, never inside a model, so every backend sees identical pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

MEAN = 127.0
SCALE = 128.0


def to_rgb(image: Image.Image) -> Image.Image:
    """Gray, palette and alpha images become RGB; alpha is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def preprocess_image(image: Image.Image, *, size: int) -> np.ndarray:
    """One image -> (3, size, size) float32, channels first."""
    rgb = to_rgb(image)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    pixels = np.asarray(rgb, dtype=np.float32)  # (H, W, 3) in 0..255
    return np.ascontiguousarray(((pixels - MEAN) / SCALE).transpose(2, 0, 1))


def _resized(image: Image.Image, size: int) -> Image.Image:
    """`image` at (size, size) in mode L or RGB. Gray images stay gray: Pillow's bilinear resize
    treats every band alike, so resizing L and repeating it gives exactly the pixels of resizing
    its RGB conversion, at a third of the work (tests/unit/plada/test_preprocess.py checks it)."""
    if image.mode not in ("L", "RGB"):
        image = to_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return image


def preprocess_batch(
    images: Sequence[Image.Image], *, size: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Images -> (B, 3, size, size) float32, the input of every encoder backend (NCHW).

    The same values as `preprocess_image` per image. The pixels are gathered as uint8 first and
    scaled in one vectorised pass (one per-image float pass was half the cost of a batch).
    `out`: a (B, 3, size, size) float32 buffer to fill and return (a pipeline reuses it).
    """
    shape = (len(images), 3, size, size)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32:
        raise ValueError(f"out buffer is {out.shape} {out.dtype}, expected {shape} float32")
    pixels = np.empty(shape, dtype=np.uint8)  # (B, 3, S, S)
    for i, image in enumerate(images):
        array = np.asarray(_resized(image, size))  # (S, S) for L, (S, S, 3) for RGB
        pixels[i] = array if array.ndim == 2 else array.transpose(2, 0, 1)
    # (x - 127) and the division by 128 (a power of two) are exact in float32: any order of
    # these operations gives the bits of preprocess_image.
    np.subtract(pixels, np.float32(MEAN), out=out, dtype=np.float32)
    out *= np.float32(1.0 / SCALE)
    return out
