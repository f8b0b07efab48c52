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


def preprocess_batch(images: Sequence[Image.Image], *, size: int) -> np.ndarray:
    """Images -> (B, 3, size, size) float32, the input of every encoder backend (NCHW)."""
    out = np.empty((len(images), 3, size, size), dtype=np.float32)
    for i, image in enumerate(images):
        out[i] = preprocess_image(image, size=size)
    return out
