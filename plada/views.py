"""Views: how a device looks at the kept reference images before embedding them.

A view is a short, closed, versioned recipe of deterministic image operations. It travels in a
payload as data (never code): every operation is a name from `OPS` with every one of its
parameters present, typed and inside its bounds. Builder and agent apply it with this module
alone (Pillow + NumPy, integer arithmetic), so both see the same pixels.

Wire form (inside the payload body, canonical CBOR like every other field)::

    view = {"version": 1, "ops": [{"op": tstr, <param>: int | tstr, ...}, ...]}   # 1..8 ops

Operations (version 1):

    grayscale                                  luminance only (mode L)
    invert                                     255 - v
    polarity      background: dark | light     invert when the image's border median is on the
                                               other side of 128 (a per-image, deterministic rule)
    autocontrast  cutoff: 0..49 (% per end)    stretch to 0..255 (Pillow ImageOps.autocontrast)
    crop_content  threshold: 1..255,           crop to the box of pixels whose luminance differs
                  margin: 0..50 (% of side),   from the border median by >= threshold, widened by
                  square: 0 | 1                margin on every side (and to a square); outside
                                               the image is filled with the border median
    pad           margin: 0..50, fill: 0..255  a border of margin % of the longer side
    resize        size: 1..1024, filter: name  to size x size with a named Pillow filter
    quantize      levels: 2..256               levels evenly spaced grey levels per channel

Sides are capped at MAX_SIDE after every operation (a chain of pads cannot grow an image without
bound on a device). `view_digest` is the sha256 of the canonical CBOR: the key of the agent's
feature cache, so features under one view are never reused for another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
import numpy as np
from PIL import Image, ImageOps

from plada.errors import PayloadDecodeError, PayloadLimitError, PayloadValueError

__all__ = [
    "FILTERS",
    "MAX_SIDE",
    "MAX_VIEW_OPS",
    "OPS",
    "VIEW_VERSION",
    "View",
    "ViewOp",
    "apply_view",
    "apply_view_all",
    "border_median",
    "content_box",
    "view_digest",
    "view_from_obj",
    "view_from_ops",
]

VIEW_VERSION = 1
MAX_VIEW_OPS = 8
MAX_SIDE = 2048
FILTERS: Mapping[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class _Int:
    low: int
    high: int


@dataclass(frozen=True)
class _Choice:
    values: tuple[str, ...]


_Param = _Int | _Choice

# The closed vocabulary: op name -> its parameters (every one required on the wire, so a view
# has exactly one encoding).
OPS: Mapping[str, Mapping[str, _Param]] = {
    "grayscale": {},
    "invert": {},
    "polarity": {"background": _Choice(("dark", "light"))},
    "autocontrast": {"cutoff": _Int(0, 49)},
    "crop_content": {"threshold": _Int(1, 255), "margin": _Int(0, 50), "square": _Int(0, 1)},
    "pad": {"margin": _Int(0, 50), "fill": _Int(0, 255)},
    "resize": {"size": _Int(1, 1024), "filter": _Choice(tuple(FILTERS))},
    "quantize": {"levels": _Int(2, 256)},
}


@dataclass(frozen=True)
class ViewOp:
    name: str
    params: tuple[tuple[str, int | str], ...]  # sorted by name

    @classmethod
    def make(cls, name: str, **params: int | str) -> ViewOp:
        """An op, checked like a decoded one (PayloadError subclasses naming the field)."""
        return _check_op({"op": name, **params}, where="view.ops[?].")

    def param(self, key: str) -> Any:
        return dict(self.params)[key]

    def to_obj(self) -> dict[str, int | str]:
        return {"op": self.name, **dict(self.params)}

    def describe(self) -> str:
        inner = ", ".join(f"{k}={v}" for k, v in self.params)
        return f"{self.name}({inner})"


@dataclass(frozen=True)
class View:
    ops: tuple[ViewOp, ...]
    version: int = VIEW_VERSION

    def __post_init__(self) -> None:
        if not 1 <= len(self.ops) <= MAX_VIEW_OPS:
            raise PayloadLimitError(f"view.ops: {len(self.ops)} ops, allowed 1..{MAX_VIEW_OPS}")

    def to_obj(self) -> dict[str, Any]:
        return {"version": self.version, "ops": [op.to_obj() for op in self.ops]}

    def encode(self) -> bytes:
        """Canonical CBOR (RFC 8949 core deterministic)."""
        return cbor2.dumps(self.to_obj(), canonical=True)

    @property
    def digest(self) -> str:
        return view_digest(self)

    def describe(self) -> str:
        """`crop_content(margin=0, square=1, threshold=64) > resize(filter=box, size=8)`."""
        return " > ".join(op.describe() for op in self.ops)

    def apply(self, image: Image.Image) -> Image.Image:
        return apply_view(self, image)


def view_digest(view: View) -> str:
    return hashlib.sha256(view.encode()).hexdigest()


# ---------------------------------------------------------------- decoding


def _check_op(obj: object, *, where: str) -> ViewOp:
    if not isinstance(obj, dict):
        raise PayloadDecodeError(f"{where.rstrip('.')}: expected a map, got {type(obj).__name__}")
    name = obj.get("op")
    if not isinstance(name, str):
        raise PayloadDecodeError(f"{where}op: missing or not a string")
    if name not in OPS:
        raise PayloadValueError(f"{where}op: {name[:40]!r} is not a view operation of version 1")
    schema = OPS[name]
    for key in obj:
        if key != "op" and key not in schema:
            raise PayloadDecodeError(f"{where}{str(key)[:40]}: unknown field of {name}")
    params: list[tuple[str, int | str]] = []
    for key, kind in sorted(schema.items()):
        if key not in obj:
            raise PayloadDecodeError(f"{where}{key}: missing")
        value = obj[key]
        if isinstance(kind, _Int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise PayloadDecodeError(
                    f"{where}{key}: expected an integer, got {type(value).__name__}"
                )
            if not kind.low <= value <= kind.high:
                raise PayloadValueError(f"{where}{key}: {value} is outside {kind.low}..{kind.high}")
        else:
            if not isinstance(value, str):
                raise PayloadDecodeError(
                    f"{where}{key}: expected a string, got {type(value).__name__}"
                )
            if value not in kind.values:
                raise PayloadValueError(
                    f"{where}{key}: {value[:40]!r} is not one of {', '.join(kind.values)}"
                )
        params.append((key, value))
    return ViewOp(name, tuple(params))


def view_from_obj(obj: object, *, where: str = "view") -> View:
    """A View from its decoded CBOR map; PayloadError subclasses naming the bad field."""
    if not isinstance(obj, dict):
        raise PayloadDecodeError(f"{where}: expected a map, got {type(obj).__name__}")
    for key in obj:
        if key not in ("version", "ops"):
            raise PayloadDecodeError(f"{where}.{str(key)[:40]}: unknown field")
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise PayloadDecodeError(f"{where}.version: missing or not an integer")
    if version != VIEW_VERSION:
        raise PayloadDecodeError(
            f"{where}.version: version {version}, this build reads {VIEW_VERSION}"
        )
    ops = obj.get("ops")
    if not isinstance(ops, list):
        raise PayloadDecodeError(f"{where}.ops: missing or not an array")
    if not 1 <= len(ops) <= MAX_VIEW_OPS:
        raise PayloadLimitError(f"{where}.ops: {len(ops)} ops, allowed 1..{MAX_VIEW_OPS}")
    return View(tuple(_check_op(op, where=f"{where}.ops[{i}].") for i, op in enumerate(ops)))


def view_from_ops(ops: Sequence[Mapping[str, int | str]]) -> View:
    """A View from `[{"op": "resize", "size": 8, "filter": "box"}, ...]` (the builder's form)."""
    return view_from_obj({"version": VIEW_VERSION, "ops": [dict(op) for op in ops]})


# ---------------------------------------------------------------- applying


def _luminance(image: Image.Image) -> np.ndarray:
    gray = image if image.mode == "L" else image.convert("L")
    return np.asarray(gray, dtype=np.uint8)


def border_median(image: Image.Image) -> int:
    """Median luminance of the outermost pixel ring: the image's background, as a rule."""
    lum = _luminance(image)
    ring = np.concatenate([lum[0], lum[-1], lum[:, 0], lum[:, -1]])
    return int(np.median(ring))


def content_box(image: Image.Image, threshold: int) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels whose luminance differs from the border median
    by >= threshold; None if there are none."""
    lum = _luminance(image).astype(np.int16)
    mask = np.abs(lum - border_median(image)) >= threshold
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _fill(image: Image.Image, value: int) -> int | tuple[int, int, int]:
    return value if image.mode == "L" else (value, value, value)


def _crop_content(image: Image.Image, threshold: int, margin: int, square: int) -> Image.Image:
    box = content_box(image, threshold)
    if box is None:
        return image
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    if square:
        side = max(width, height)
        left -= (side - width) // 2
        top -= (side - height) // 2
        width = height = side
    pad = (max(width, height) * margin + 50) // 100
    left, top, width, height = left - pad, top - pad, width + 2 * pad, height + 2 * pad
    out = Image.new(image.mode, (width, height), _fill(image, border_median(image)))
    out.paste(image, (-left, -top))
    return out


def _pad(image: Image.Image, margin: int, fill: int) -> Image.Image:
    pad = (max(image.size) * margin + 50) // 100
    return ImageOps.expand(image, border=pad, fill=_fill(image, fill))


def _quantize(image: Image.Image, levels: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.int32)
    step = levels - 1
    q = (pixels * step + 127) // 255  # nearest of `levels` evenly spaced levels
    out = ((q * 255 + step // 2) // step).astype(np.uint8)
    return Image.fromarray(out, mode=image.mode)


def _cap(image: Image.Image) -> Image.Image:
    width, height = image.size
    if max(width, height) <= MAX_SIDE:
        return image
    scale = MAX_SIDE / max(width, height)
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _apply_op(op: ViewOp, image: Image.Image) -> Image.Image:
    p = dict(op.params)
    if op.name == "grayscale":
        return image.convert("L")
    if op.name == "invert":
        return ImageOps.invert(image)
    if op.name == "polarity":
        dark = border_median(image) < 128
        return image if dark == (p["background"] == "dark") else ImageOps.invert(image)
    if op.name == "autocontrast":
        return ImageOps.autocontrast(image, cutoff=int(p["cutoff"]))
    if op.name == "crop_content":
        return _crop_content(image, int(p["threshold"]), int(p["margin"]), int(p["square"]))
    if op.name == "pad":
        return _pad(image, int(p["margin"]), int(p["fill"]))
    if op.name == "resize":
        size = int(p["size"])
        return image.resize((size, size), FILTERS[str(p["filter"])])
    if op.name == "quantize":
        return _quantize(image, int(p["levels"]))
    raise PayloadValueError(f"view: operation {op.name!r} has no implementation")  # unreachable


def apply_view(view: View | None, image: Image.Image) -> Image.Image:
    """The image as `view` shows it (mode L or RGB); the image itself when view is None."""
    if view is None:
        return image
    from plada.preprocess import to_rgb

    out = image if image.mode in ("L", "RGB") else to_rgb(image)
    for op in view.ops:
        out = _cap(_apply_op(op, out))
    return out


def apply_view_all(view: View | None, images: Sequence[Image.Image]) -> list[Image.Image]:
    return [apply_view(view, image) for image in images]
