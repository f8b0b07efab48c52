"""build_corpus: concatenate importers, in order, into a new corpus folder.

Its own module because it joins the two sides: the writer (format) and the importers (sources).
Images are loaded (a source's DeferredImage: decoding, resizing), normalised, PNG-encoded and
hashed on every core (plada.ordered_pool) and appended in order by this thread, so the corpus is
byte for byte what one thread would write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from plada.corpus.format import Corpus
from plada.corpus.importers import CorpusSource, SourceImage, resolve_image
from plada.corpus.writer import (
    DEFAULT_IMAGES_PER_SHARD,
    CorpusWriter,
    EncodedImage,
    encode_image,
)
from plada.ordered_pool import available_cores, map_ordered


class ImageSource(Protocol):
    """An importer: a named, ordered, deterministic stream of (key, image or deferred image)."""

    name: str

    def __iter__(self) -> Iterator[tuple[str, SourceImage]]: ...


ProgressFn = Callable[[str, int], None]


def build_corpus(
    sources: Iterable[ImageSource],
    out: Path,
    *,
    images_per_shard: int = DEFAULT_IMAGES_PER_SHARD,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    workers: int | None = None,
) -> Corpus:
    """Concatenate the sources, in order, into a new corpus at `out` and open it.

    `workers` threads encode images (default: the cores this process may use; 1 = inline)."""
    threads = workers if workers is not None else available_cores()
    with CorpusWriter(out, images_per_shard=images_per_shard, overwrite=overwrite) as writer:
        for source in sources:
            if isinstance(source, CorpusSource):
                source.copy_into(writer, progress=progress)
                continue
            encoded_images = map_ordered(_encode, source, workers=threads, chunk=32, name="png")
            for key, encoded in encoded_images:
                writer.add_prepared(encoded, source=source.name, key=key)
                if progress is not None and len(writer) % 1000 == 0:
                    progress(source.name, len(writer))
        corpus = writer.close()
    if progress is not None:
        progress("done", len(corpus))
    return corpus


def _encode(item: tuple[str, SourceImage]) -> tuple[str, EncodedImage]:
    key, image = item
    return key, encode_image(resolve_image(image))
