"""Candidate views from the target's own train images (issue 16: views).

A view (plada.views) tells devices how to look at the kept reference images. The builder does not
pick one from a list tuned to known tasks: it measures how the target's images look and how the
corpus's look, and proposes views that make the reference images look like the target in each
measured respect where the two differ. `--auto` then validates every proposal on the train folds
(together with strategy and keep); "no view" is always a candidate, so a proposal that does not
help is simply not chosen.

Measured on the target's train images (and on an evenly spaced sample of the corpus):

    side        median longer side in pixels
    grey        every image is grey (mode L, or R == G == B)
    background  border median luminance: dark (< 128) or light, the majority of images
    levels      distinct luminance values over all images (scanned or synthetic targets have few)
    fill        median of (content box longer side / image longer side), the content box found with
                a threshold of a quarter of the image's own luminance range
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from plada.views import View, ViewOp, border_median, content_box

# Only properties that differ between target and corpus become ops. A quantisation to more levels
# than this is invisible after the device's resize and 8-bit input (a 256-level image is common).
MAX_QUANTIZE_LEVELS = 64
CORPUS_SAMPLE = 512


@dataclass(frozen=True)
class Look:
    """How a set of images looks, in the respects a view can change."""

    side: int
    grey: bool
    background: str  # "dark" | "light"
    levels: int
    fill: float  # 0..1
    count: int

    def to_json(self) -> dict[str, int | float | bool | str]:
        return {
            "side": self.side,
            "grey": self.grey,
            "background": self.background,
            "levels": self.levels,
            "fill": round(self.fill, 3),
            "count": self.count,
        }


def _is_grey(image: Image.Image) -> bool:
    if image.mode in ("L", "1", "I", "F"):
        return True
    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def content_threshold(image: Image.Image) -> int:
    """A quarter of the image's luminance range (at least 1): what counts as content."""
    lum = np.asarray(image.convert("L"), dtype=np.int16)
    return max(1, int(lum.max() - lum.min()) // 4)


def _fill(image: Image.Image) -> float:
    box = content_box(image, content_threshold(image))
    if box is None:
        return 1.0
    left, top, right, bottom = box
    return max(right - left, bottom - top) / max(image.size)


def measure(images: Sequence[Image.Image]) -> Look:
    """The Look of `images` (at least one)."""
    if not images:
        raise ValueError("measure needs at least one image")
    levels: set[int] = set()
    dark = 0
    for image in images:
        lum = np.asarray(image.convert("L"))
        levels.update(np.unique(lum).tolist())
        dark += border_median(image) < 128
    return Look(
        side=int(np.median([max(image.size) for image in images])),
        grey=all(_is_grey(image) for image in images),
        background="dark" if 2 * dark >= len(images) else "light",
        levels=len(levels),
        fill=float(np.median([_fill(image) for image in images])),
        count=len(images),
    )


def corpus_sample(num_images: int, *, size: int = CORPUS_SAMPLE) -> list[int]:
    """Evenly spaced corpus indices (every source of a concatenated corpus is represented)."""
    count = min(size, num_images)
    return sorted({int(i) for i in np.linspace(0, num_images - 1, count)})


def _typical_threshold(images: Sequence[Image.Image]) -> int:
    return int(np.median([content_threshold(image) for image in images]))


def propose_views(
    target: Sequence[Image.Image], corpus: Sequence[Image.Image], *, max_views: int = 1
) -> tuple[list[View], Look, Look]:
    """Up to `max_views` views (most complete first) and the two Looks they come from.

    The full proposal makes the corpus look like the target in every respect where they differ:
    grey, background polarity, framing (crop to the content box with the target's own margin),
    size (downscale to the target's side with a box filter, the average a coarse scanner takes)
    and grey levels. The second keeps only the geometry (framing and size), for targets where
    the photometric part hurts.
    """
    want, have = measure(target), measure(corpus)
    photometric: list[ViewOp] = []
    geometric: list[ViewOp] = []
    if want.grey and not have.grey:
        photometric.append(ViewOp.make("grayscale"))
    # The corpus is usually mixed; making every image take the target's polarity is the point.
    photometric.append(ViewOp.make("polarity", background=want.background))
    if want.fill > have.fill or want.side < have.side:
        # margin per side, in % of the content's longer side, so the content fills the frame as
        # it fills the target's
        margin = min(50, max(0, round(100 * (1 / max(want.fill, 0.02) - 1) / 2)))
        threshold = max(1, _typical_threshold(target))
        geometric.append(ViewOp.make("crop_content", threshold=threshold, margin=margin, square=1))
    if want.side < have.side:
        geometric.append(ViewOp.make("resize", size=max(1, min(1024, want.side)), filter="box"))
    quantize: list[ViewOp] = []
    if want.levels <= MAX_QUANTIZE_LEVELS and want.levels < have.levels:
        quantize.append(ViewOp.make("quantize", levels=max(2, want.levels)))
    proposals: list[View] = []
    full = photometric + geometric + quantize
    if geometric or quantize:
        proposals.append(View(tuple(full)))
        if geometric and tuple(geometric) != tuple(full):
            proposals.append(View(tuple(geometric)))
    return proposals[:max_views], want, have
