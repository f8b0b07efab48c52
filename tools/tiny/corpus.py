"""A tiny real corpus of generated images with a known class structure, for unit tests.

Each image is a filled shape (circle, square, triangle, cross) on a noisy background. The shape is
the class; the colour also leans towards a per-class hue, so even crude features separate the
classes. Two sources: `tiny-shapes` (RGB, first two thirds) and `tiny-gray` (mode L, the rest), so
consumers meet both modes a corpus can return. Deterministic in (num_images, seed).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from plada.corpus import ArraySource, Corpus, build_corpus

TINY_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")
TINY_SIZE = 32
_CLASS_HUES = (0.0, 0.33, 0.6, 0.8)


def tiny_labels(num_images: int, *, seed: int = 0) -> np.ndarray:
    """The class of every image of make_tiny_corpus(num_images, seed): (N,) int64, balanced."""
    rng = np.random.default_rng(seed)
    labels = np.arange(num_images, dtype=np.int64) % len(TINY_CLASSES)
    return rng.permutation(labels)


def tiny_image(label: int, rng: np.random.Generator, *, size: int = TINY_SIZE) -> Image.Image:
    """One RGB image of class `label`: shape position, size and colour jittered by rng."""
    noise = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    base = rng.integers(150, 200)
    img = Image.fromarray((noise + base).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    hue = (_CLASS_HUES[label] + rng.uniform(-0.06, 0.06)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.3, 0.7))
    colour = (int(r * 255), int(g * 255), int(b * 255))
    half = int(rng.integers(size // 4, size // 2 - 2))
    cx = int(rng.integers(half, size - half))
    cy = int(rng.integers(half, size - half))
    box = (cx - half, cy - half, cx + half, cy + half)
    name = TINY_CLASSES[label]
    if name == "circle":
        draw.ellipse(box, fill=colour)
    elif name == "square":
        draw.rectangle(box, fill=colour)
    elif name == "triangle":
        draw.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=colour)
    else:
        w = max(2, half // 2)
        draw.rectangle((cx - w, cy - half, cx + w, cy + half), fill=colour)
        draw.rectangle((cx - half, cy - w, cx + half, cy + w), fill=colour)
    return img


def tiny_arrays(num_images: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, S, S, 3) uint8, labels (N,) int64), as stored in the tiny corpus before the
    gray part is converted to L."""
    labels = tiny_labels(num_images, seed=seed)
    rng = np.random.default_rng([seed, 1])
    images = (
        np.stack([np.asarray(tiny_image(int(c), rng)) for c in labels])
        if num_images
        else (np.zeros((0, TINY_SIZE, TINY_SIZE, 3), np.uint8))
    )
    return images, labels


def make_tiny_corpus(path: Path, *, num_images: int = 300, seed: int = 0) -> Corpus:
    """Build (or rebuild) a tiny corpus at `path`; labels: `tiny_labels(num_images, seed=seed)`."""
    images, _ = tiny_arrays(num_images, seed=seed)
    num_rgb = num_images - num_images // 3
    gray = (
        np.stack([np.asarray(Image.fromarray(a, "RGB").convert("L")) for a in images[num_rgb:]])
        if num_images - num_rgb
        else np.zeros((0, TINY_SIZE, TINY_SIZE), np.uint8)
    )
    sources = [ArraySource(images[:num_rgb], name="tiny-shapes")]
    if len(gray):
        keys = [str(i) for i in range(num_rgb, num_images)]
        sources.append(ArraySource(gray, name="tiny-gray", keys=keys))
    return build_corpus(sources, Path(path), images_per_shard=128, overwrite=True)


def make_tiny_imagefolder(
    root: Path, *, train_per_class: int = 10, test_per_class: int = 10, seed: int = 1
) -> Path:
    """A target task in ImageFolder layout: root/{train,test}/<class>/<n>.png, same classes."""
    rng = np.random.default_rng([seed, 2])
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(TINY_CLASSES):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(per_class):
                tiny_image(label, rng).save(folder / f"{n:04d}.png")
    return Path(root)
