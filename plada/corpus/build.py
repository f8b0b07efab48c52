"""build_corpus: concatenate importers, in order, into a new corpus folder.

Its own module because it joins the two sides: the writer (format) and the importers (sources).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from PIL import Image

from plada.corpus.format import Corpus
from plada.corpus.importers import CorpusSource
from plada.corpus.writer import DEFAULT_IMAGES_PER_SHARD, CorpusWriter


class ImageSource(Protocol):
    """An importer: a named, ordered, deterministic stream of (key, image or PNG bytes)."""

    name: str

    def __iter__(self) -> Iterator[tuple[str, Image.Image]]: ...


ProgressFn = Callable[[str, int], None]


def build_corpus(
    sources: Iterable[ImageSource],
    out: Path,
    *,
    images_per_shard: int = DEFAULT_IMAGES_PER_SHARD,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> Corpus:
    """Concatenate the sources, in order, into a new corpus at `out` and open it."""
    with CorpusWriter(out, images_per_shard=images_per_shard, overwrite=overwrite) as writer:
        for source in sources:
            if isinstance(source, CorpusSource):
                source.copy_into(writer, progress=progress)
                continue
            for key, image in source:
                writer.add_image(image, source=source.name, key=key)
                if progress is not None and len(writer) % 1000 == 0:
                    progress(source.name, len(writer))
        corpus = writer.close()
    if progress is not None:
        progress("done", len(corpus))
    return corpus
