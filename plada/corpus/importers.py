"""Importers: deterministic, ordered streams of (key, image) that build_corpus concatenates.

Order is part of the corpus identity, so every importer sorts what the file system gives it
(relative POSIX paths, byte order) and never depends on mtimes, absolute paths or locale.
"""

from __future__ import annotations

import gzip
import io
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from plada.corpus.format import Corpus
from plada.corpus.manifest import pixel_digest
from plada.corpus.writer import CorpusWriter
from plada.errors import CorpusBuildError, CorpusError, ImageError
from plada.files import is_image_file
from plada.images import decode_image


@dataclass(frozen=True)
class DeferredImage:
    """An image a source names but does not make: build_corpus calls `load` in a worker thread,
    so decoding files and resizing run on every core while the corpus is written in order."""

    load: Callable[[], Image.Image]


SourceImage = Image.Image | DeferredImage  # what a source yields beside each key


def resolve_image(image: SourceImage) -> Image.Image:
    return image.load() if isinstance(image, DeferredImage) else image


def open_image_file(path: Path) -> Image.Image:
    """Decode an image file fully (bounded before decoding: plada.images), or raise
    CorpusBuildError naming the file."""
    try:
        img = decode_image(path)
    except ImageError as exc:
        raise CorpusBuildError(str(exc)) from exc
    return img if img.mode != "P" else img.convert("RGBA")


def list_image_files(root: Path) -> list[Path]:
    """Image files under root, sorted by their relative POSIX path (symlinks followed)."""
    if not root.is_dir():
        raise CorpusBuildError(f"{root}: not a directory")
    files = [p for p in root.rglob("*") if is_image_file(p)]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix().encode("utf-8"))


@dataclass
class ImageFolderSource:
    """Every image file under `root` (any depth), ordered by relative path. Key = relative path."""

    root: Path
    name: str = "imagefolder"

    def __iter__(self) -> Iterator[tuple[str, SourceImage]]:
        for p in list_image_files(Path(self.root)):
            yield p.relative_to(self.root).as_posix(), DeferredImage(partial(open_image_file, p))


@dataclass
class FileListSource:
    """Files named one per line in a text file (relative to the list's folder), or given paths.

    Keys are the paths as written, so the same list gives the same corpus on any machine.
    """

    paths: Sequence[str]
    base: Path
    name: str = "filelist"

    @classmethod
    def from_list_file(cls, list_file: Path, *, name: str = "filelist") -> FileListSource:
        try:
            text = list_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise CorpusBuildError(f"{list_file}: cannot read file list ({exc})") from exc
        lines = [ln.strip() for ln in text.splitlines()]
        paths = [ln for ln in lines if ln and not ln.startswith("#")]
        if not paths:
            raise CorpusBuildError(f"{list_file}: the file list is empty")
        return cls(paths=paths, base=list_file.parent, name=name)

    def __iter__(self) -> Iterator[tuple[str, SourceImage]]:
        for i, rel in enumerate(self.paths):
            p = Path(rel)
            if not p.is_absolute():
                p = self.base / p
            yield rel, DeferredImage(partial(_open_listed, p, line=i + 1))


def _open_listed(path: Path, *, line: int) -> Image.Image:
    try:
        return open_image_file(path)
    except CorpusBuildError as exc:
        raise CorpusBuildError(f"file list line {line}: {exc}") from exc


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST style, optionally .gz) as a numpy array. Only unsigned byte data."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusBuildError(f"{path}: cannot read IDX file ({exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise CorpusBuildError(f"{path}: corrupt gzip ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise CorpusBuildError(f"{path}: not an IDX file (bad magic)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise CorpusBuildError(f"{path}: IDX type 0x{dtype_code:02x} unsupported (only ubyte)")
    if len(raw) < 4 + 4 * ndim:
        raise CorpusBuildError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    expected = int(np.prod(dims)) if dims else 0
    body = raw[4 + 4 * ndim :]
    if len(body) != expected:
        raise CorpusBuildError(
            f"{path}: IDX header says {dims} ({expected} bytes), file has {len(body)}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


@dataclass
class ArraySource:
    """Images from a uint8 array (N, H, W) gray or (N, H, W, 3) RGB. Key = `<prefix><i>`."""

    array: np.ndarray
    name: str
    key_prefix: str = ""
    keys: Sequence[str] | None = None

    def __post_init__(self) -> None:
        a = self.array
        if a.dtype != np.uint8 or not (a.ndim == 3 or (a.ndim == 4 and a.shape[3] == 3)):
            raise CorpusBuildError(
                f"source {self.name}: need uint8 (N,H,W) or (N,H,W,3), got {a.dtype} {a.shape}"
            )
        if self.keys is not None and len(self.keys) != len(a):
            raise CorpusBuildError(f"source {self.name}: {len(self.keys)} keys for {len(a)} images")

    def __len__(self) -> int:
        return len(self.array)

    def __iter__(self) -> Iterator[tuple[str, Image.Image]]:
        mode = "L" if self.array.ndim == 3 else "RGB"
        for i in range(len(self.array)):
            key = self.keys[i] if self.keys is not None else f"{self.key_prefix}{i}"
            yield key, Image.fromarray(np.ascontiguousarray(self.array[i]), mode)


def idx_source(images_path: Path, *, name: str = "idx") -> ArraySource:
    """The images of an IDX file (N, H, W); keys are positions in the file."""
    arr = read_idx(images_path)
    if arr.ndim != 3:
        raise CorpusBuildError(f"{images_path}: expected 3 dimensions (N,H,W), got {arr.shape}")
    return ArraySource(arr, name=name)


@dataclass
class GeneratorSource:
    """Any deterministic generator function of (key, image) pairs."""

    name: str
    make: Callable[[], Iterator[tuple[str, SourceImage]]]

    def __iter__(self) -> Iterator[tuple[str, SourceImage]]:
        return self.make()


@dataclass
class CorpusSource:
    """All images of an existing corpus, copied byte for byte with their source names and keys.

    The source is verified while copying (stored-bytes hash), so a corrupt input corpus cannot
    leak into a new one.
    """

    path: Path
    name: str = "corpus"
    _corpus: Corpus | None = field(default=None, repr=False)

    def __iter__(self) -> Iterator[tuple[str, Image.Image]]:
        corpus = self._open()
        for i, img in corpus.iter_images():
            yield corpus.entry(i).key, img

    def _open(self) -> Corpus:
        if self._corpus is None:
            try:
                self._corpus = Corpus.open(Path(self.path), verify_reads=True)
            except CorpusError as exc:
                raise CorpusBuildError(f"cannot import corpus {self.path}: {exc}") from exc
        return self._corpus

    def copy_into(
        self, writer: CorpusWriter, *, progress: Callable[[str, int], None] | None = None
    ) -> None:
        corpus = self._open()
        for i in range(len(corpus)):
            entry = corpus.entry(i)
            data = corpus.read_bytes(i)  # hash-checked
            img = Image.open(io.BytesIO(data))
            img.load()
            digest = pixel_digest(img)
            if digest != entry.pixel_sha256:
                raise CorpusBuildError(
                    f"cannot import corpus {self.path}: image {i} does not match its manifest"
                )
            writer.add_encoded(
                data, source=entry.source, key=entry.key, image=img, pixel_sha256=digest
            )
            if progress is not None and len(writer) % 1000 == 0:
                progress(entry.source, len(writer))
