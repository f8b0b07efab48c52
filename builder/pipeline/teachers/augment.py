"""Deterministic augmented copies of the target's train images for the teacher.

The operations are generic (a mirror image and small shifts with the border repeated); whether
they help a task, mirrored digits do not, is for the k-fold choice to find out (teachers.choose),
not for a constant. The shift is a fixed fraction of the image's side so an 8x8 scan moves by one
pixel and a 28x28 one by two."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from builder.errors import BuilderError

SHIFT_FRACTION = 1 / 14  # of the shorter side, at least one pixel
PLAIN_MODES = ("L", "RGB", "RGBA")  # modes a uint8 array maps back to as they are
OPS = ("hflip", "shift+", "shift-")
# A policy names the ops whose copies a teacher trains on besides the images themselves.
POLICIES: Mapping[str, tuple[str, ...]] = {
    "shift": ("shift+", "shift-"),
    "flip-shift": ("hflip", "shift+", "shift-"),
}


def shift(image: Image.Image, dx: int, dy: int) -> Image.Image:
    """Move the content by (dx, dy) pixels, repeating the border into the uncovered strip."""
    pixels = np.asarray(image)
    pad = max(abs(dx), abs(dy))
    widths = ((pad, pad), (pad, pad)) + (((0, 0),) if pixels.ndim == 3 else ())
    padded = np.pad(pixels, widths, mode="edge")
    h, w = pixels.shape[:2]
    top, left = pad - dy, pad - dx
    return Image.fromarray(np.ascontiguousarray(padded[top : top + h, left : left + w]))


def apply_op(image: Image.Image, op: str) -> Image.Image:
    step = max(1, round(min(image.size) * SHIFT_FRACTION))
    if op == "hflip":
        return ImageOps.mirror(image)
    if op == "shift+":
        return shift(image, step, step)
    if op == "shift-":
        return shift(image, -step, -step)
    raise BuilderError(f"unknown augmentation {op!r} (known: {', '.join(OPS)})")


@dataclass(frozen=True)
class Augmented:
    """Copies of train images: which op made each and from which train image (row order)."""

    images: list[Image.Image]
    ops: np.ndarray  # (m,) str
    source: np.ndarray  # (m,) int64 index into the train split


def augment_images(images: Sequence[Image.Image], ops: Sequence[str] = OPS) -> Augmented:
    """Every op applied to every image, op by op (so a policy's rows are whole blocks)."""
    out: list[Image.Image] = []
    names: list[str] = []
    source: list[int] = []
    for op in ops:
        for i, image in enumerate(images):
            plain = image if image.mode in PLAIN_MODES else image.convert("RGB")
            out.append(apply_op(plain, op))
            names.append(op)
            source.append(i)
    return Augmented(out, np.asarray(names, dtype=str), np.asarray(source, dtype=np.int64))


def policy_rows(ops: np.ndarray, policy: str) -> np.ndarray:
    """Indices of the augmented rows a policy trains on."""
    if policy not in POLICIES:
        raise BuilderError(f"unknown augmentation policy {policy!r} (known: {', '.join(POLICIES)})")
    return np.flatnonzero(np.isin(ops, POLICIES[policy]))
