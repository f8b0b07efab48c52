"""Parity checks of an exported encoder against PyTorch: real photos, row cosines, ORT runs.

The photos are scikit-image's bundled pictures, cropped deterministically, so every export is
checked on the same real images without a download.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from builder.errors import EncoderError

# Bundled scikit-image pictures that load offline (others need a download).
_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "moon",
    "clock",
    "brick",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "page",
    "text",
    "colorwheel",
    "cell",
)


def real_images(num_images: int, *, seed: int) -> list[Image.Image]:
    """Deterministic square crops (1/4 to full side) of scikit-image's bundled photographs."""
    try:
        import skimage.data
    except ImportError as exc:
        raise EncoderError(f"real images for parity checks need scikit-image: {exc}") from exc
    photos = [np.asarray(getattr(skimage.data, name)()) for name in _PHOTOS]
    rng = np.random.default_rng(seed)
    out: list[Image.Image] = []
    for i in range(num_images):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        side = int(rng.integers(min(h, w) // 4, min(h, w) + 1))
        y = int(rng.integers(0, h - side + 1))
        x = int(rng.integers(0, w - side + 1))
        out.append(Image.fromarray(photo[y : y + side, x : x + side]))
    return out


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, D), (N, D) -> (N,) cosine similarity of matching rows (0 where a row is all zero)."""
    num = (a.astype(np.float64) * b).sum(1)
    den = np.linalg.norm(a.astype(np.float64), axis=1) * np.linalg.norm(
        b.astype(np.float64), axis=1
    )
    return np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)


def ort_session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, batch: np.ndarray) -> np.ndarray:
    out = np.concatenate(
        [
            session.run(["features"], {"input": batch[i : i + 64]})[0]
            for i in range(0, len(batch), 64)
        ]
    )
    return np.asarray(out, dtype=np.float32)
