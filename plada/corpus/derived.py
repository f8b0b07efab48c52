"""DerivedSource: N images made from an existing corpus by index-seeded crops, flips, rotations
and rescales, so a corpus of any size can be built deterministically from the real sources.

Image i of a derived source (seed s, base corpus of B images):

- base image  b = i mod B  (round robin: pass i // B over the base, in index order, so every base
  image is used about N / B times and the base is read as a stream)
- parameters from `numpy.random.default_rng([s, i])` alone, drawn in this order:
  crop percent p in [60, 100] (the crop is round(p * w / 100) x round(p * h / 100) of the base's
  w x h), crop origin x0 in [0, w - cw], y0 in [0, h - ch], mirror flag in {0, 1}, quarter turns
  q in {0, 1, 2, 3} (counter-clockwise), output long side S from `OUTPUT_SIDES`
- pixels: crop, mirror left-right if the flag is set, rotate q * 90 degrees (both exact), then a
  Pillow bilinear resize so the long side is S (the short side scales with it, at least 1 px)

The key spells all of it out: `<b>:c<x0>,<y0>,<cw>,<ch>:f<flag>:r<degrees>:s<S>`, and the default
source name carries the base corpus's fingerprint prefix, so every derived image names its base
image and transform. Same base, N and seed => same manifest => same fingerprint (the caveat of
`natural-crops` applies: a Pillow that resizes differently moves it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from plada.corpus.format import Corpus
from plada.corpus.importers import DeferredImage, SourceImage
from plada.errors import CorpusBuildError, CorpusError

OUTPUT_SIDES = (24, 32, 48, 64)  # long side of a derived image, px
MIN_CROP_PERCENT = 60
MAX_DERIVED_IMAGES = 100_000_000  # a bound on the argument, far above ImageNet-21K's 14.2M
_TURNS = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


@dataclass(frozen=True)
class DerivedParams:
    """The transform of one derived image (see the module docstring)."""

    base: int
    x0: int
    y0: int
    width: int  # of the crop, px
    height: int
    flip: int
    turns: int
    side: int

    def key(self) -> str:
        return (
            f"{self.base}:c{self.x0},{self.y0},{self.width},{self.height}"
            f":f{self.flip}:r{90 * self.turns}:s{self.side}"
        )


def derived_params(
    index: int, *, seed: int, base_index: int, size: tuple[int, int]
) -> DerivedParams:
    """The transform of derived image `index` whose base image (w, h) = size."""
    w, h = size
    rng = np.random.default_rng([seed, index])
    percent = int(rng.integers(MIN_CROP_PERCENT, 101))
    cw = max(1, round(w * percent / 100))
    ch = max(1, round(h * percent / 100))
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    flip = int(rng.integers(0, 2))
    turns = int(rng.integers(0, 4))
    side = OUTPUT_SIDES[int(rng.integers(0, len(OUTPUT_SIDES)))]
    return DerivedParams(base_index, x0, y0, cw, ch, flip, turns, side)


def apply_params(image: Image.Image, p: DerivedParams) -> Image.Image:
    """Crop, mirror, rotate, rescale (long side -> p.side, bilinear)."""
    out = image.crop((p.x0, p.y0, p.x0 + p.width, p.y0 + p.height))
    if p.flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    turn = _TURNS[p.turns]
    if turn is not None:
        out = out.transpose(turn)
    w, h = out.size
    scale = p.side / max(w, h)
    target = (max(1, round(w * scale)), max(1, round(h * scale)))
    return out if target == out.size else out.resize(target, Image.Resampling.BILINEAR)


@dataclass
class DerivedSource:
    """`num_images` images derived from the corpus at `base` (see the module docstring)."""

    base: Path
    num_images: int
    seed: int = 0
    name: str = ""  # default: derived-<base fingerprint[:16]>
    _corpus: Corpus | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.num_images, bool) or not isinstance(self.num_images, int):
            raise CorpusBuildError(
                f"derived source: num_images must be an int, got {self.num_images!r}"
            )
        if not 1 <= self.num_images <= MAX_DERIVED_IMAGES:
            raise CorpusBuildError(
                f"derived source: num_images must be in 1..{MAX_DERIVED_IMAGES}, "
                f"got {self.num_images}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise CorpusBuildError(f"derived source: seed must be an int >= 0, got {self.seed!r}")
        corpus = self._open()
        if len(corpus) == 0:
            raise CorpusBuildError(f"derived source: base corpus {self.base} has no images")
        if not self.name:
            self.name = f"derived-{corpus.fingerprint[:16]}"

    def __len__(self) -> int:
        return self.num_images

    def _open(self) -> Corpus:
        if self._corpus is None:
            try:
                self._corpus = Corpus.open(Path(self.base), verify_reads=True)
            except CorpusError as exc:
                raise CorpusBuildError(
                    f"derived source: cannot open base corpus {self.base}: {exc}"
                ) from exc
        return self._corpus

    def params(self, index: int) -> DerivedParams:
        corpus = self._open()
        b = index % len(corpus)
        entry = corpus.entry(b)
        return derived_params(index, seed=self.seed, base_index=b, size=(entry.width, entry.height))

    def __iter__(self) -> Iterator[tuple[str, SourceImage]]:
        """(key, image made later): build_corpus reads, transforms and encodes the images on
        every core, in order (the parameters are drawn here, in index order)."""
        for i in range(self.num_images):
            p = self.params(i)
            yield p.key(), DeferredImage(partial(self._make, p))

    def _make(self, p: DerivedParams) -> Image.Image:
        try:
            base = self._open().image(p.base)  # thread-safe (one pread per image)
        except CorpusError as exc:  # a corrupt base image (verify_reads) stops the build, named
            raise CorpusBuildError(f"derived source: base corpus {self.base}: {exc}") from exc
        return apply_params(base, p)
