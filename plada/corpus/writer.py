"""Write a corpus: normalise images, encode PNG, fill zip shards, then move the folder into place.

Everything is written into a temporary sibling folder and renamed over `out` only when the
manifest, index and header are complete, so an interrupted build never leaves a corpus that looks
complete (Corpus.open on a half-written folder fails: it has no corpus.json).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
from PIL import Image

from plada.corpus.format import Corpus
from plada.corpus.header import (
    FORMAT_NAME,
    FORMAT_VERSION,
    HEADER_FILE,
    CorpusHeader,
    FileRef,
    ShardInfo,
    SourceCount,
)
from plada.corpus.manifest import (
    INDEX_FILE,
    MANIFEST_FILE,
    MANIFEST_HEADER,
    SHARD_DIR,
    pixel_digest,
)
from plada.errors import CorpusBuildError

DEFAULT_IMAGES_PER_SHARD = 10_000
_MAX_SHARD_BYTES = 1 << 30  # zip without zip64 stays far below 4 GiB
_PNG_COMPRESS_LEVEL = 6
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_RECORD = struct.Struct("<IIQ32s")  # one index.bin record, the layout of format._INDEX_DTYPE


def normalize_image(image: Image.Image) -> Image.Image:
    """Any Pillow image -> mode L or RGB. Alpha is composited over white (gray stays gray)."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return image
    if mode == "1":
        return image.convert("L")
    if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.asarray(image, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255.0 else 1.0
        return Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8), "L")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
        if mode == "RGB":
            return image
    if mode in ("LA", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    if mode in ("RGBA", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buf.getvalue()


@dataclass(frozen=True)
class EncodedImage:
    """One image ready to append: its PNG bytes, the normalised image and its pixel hash."""

    data: bytes
    image: Image.Image
    pixel_sha256: str


def encode_image(image: Image.Image) -> EncodedImage:
    """Normalise, encode and hash one image: the part of appending that needs no writer state,
    so it can run in worker threads (Pillow's encoder and hashlib release the GIL)."""
    img = normalize_image(image)
    return EncodedImage(encode_png(img), img, pixel_digest(img))


def _check_field(value: str, what: str) -> str:
    if not value or any(c in value for c in "\t\n\r"):
        raise CorpusBuildError(f"{what} {value!r} must be non-empty without tabs or newlines")
    return value


class CorpusWriter:
    """Append images in index order; `close()` (or leaving the `with` block) publishes the corpus.

    On an exception inside the `with` block the temporary folder is removed and `out` untouched.
    """

    def __init__(
        self,
        out: Path,
        *,
        images_per_shard: int = DEFAULT_IMAGES_PER_SHARD,
        overwrite: bool = False,
    ) -> None:
        if not 1 <= images_per_shard <= 60_000:
            raise CorpusBuildError(f"images_per_shard must be in 1..60000, got {images_per_shard}")
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise CorpusBuildError(f"{self.out} already exists (pass overwrite to replace it)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.out.parent / f".{self.out.name}.tmp-{os.getpid()}"
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        (self._tmp / SHARD_DIR).mkdir(parents=True)
        self._per_shard = images_per_shard
        # manifest and index are streamed to disk and hashed as they grow: memory stays flat
        self._manifest_file = (self._tmp / MANIFEST_FILE).open("wb")
        self._manifest_hash = hashlib.sha256()
        self._index_file = (self._tmp / INDEX_FILE).open("wb")
        self._index_hash = hashlib.sha256()
        self._count = 0
        self._sources: list[SourceCount] = []  # runs of consecutive images per source
        self._write_manifest(MANIFEST_HEADER)
        self._shards: list[dict[str, object]] = []
        self._zip: zipfile.ZipFile | None = None
        self._zip_count = 0
        self._closed = False
        self.result: Corpus | None = None

    def __len__(self) -> int:
        return self._count

    def __enter__(self) -> CorpusWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def add_image(self, image: Image.Image, *, source: str, key: str) -> int:
        """Normalise, encode and append one image; returns its index."""
        return self.add_prepared(encode_image(image), source=source, key=key)

    def add_prepared(self, encoded: EncodedImage, *, source: str, key: str) -> int:
        """Append an image `encode_image` made; returns its index."""
        return self.add_encoded(
            encoded.data,
            source=source,
            key=key,
            image=encoded.image,
            pixel_sha256=encoded.pixel_sha256,
        )

    def add_encoded(
        self,
        data: bytes,
        *,
        source: str,
        key: str,
        image: Image.Image | None = None,
        pixel_sha256: str | None = None,
    ) -> int:
        """Append already-encoded PNG bytes. `image` (the decoded bytes) and `pixel_sha256` (its
        pixel hash) save work when the caller has them; otherwise the bytes are decoded here."""
        if self._closed:
            raise CorpusBuildError("writer is closed")
        _check_field(source, "source name")
        _check_field(key, "image key")
        if image is None:
            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except Exception as exc:  # Pillow raises many types for bad data
                raise CorpusBuildError(f"{source} {key}: cannot decode ({exc})") from exc
        if image.mode not in ("L", "RGB"):
            raise CorpusBuildError(f"{source} {key}: mode {image.mode}, expected L or RGB")
        digest = pixel_sha256 or pixel_digest(image)
        index = self._count
        if (
            self._zip is None
            or self._zip_count >= self._per_shard
            or self._zip_tell() > (_MAX_SHARD_BYTES)
        ):
            self._finish_shard()
            self._start_shard(index)
        zf = self._zip
        if zf is None:  # pragma: no cover - _start_shard always sets it
            raise CorpusBuildError("internal: no open shard")
        info = zipfile.ZipInfo(f"{index:09d}.png", date_time=_ZIP_DATE)
        info.compress_type = zipfile.ZIP_STORED
        info.external_attr = 0o644 << 16
        zf.writestr(info, data)
        offset = self._zip_tell() - len(data)  # STORED data is the last thing written
        record = _RECORD.pack(
            len(self._shards) - 1, len(data), offset, hashlib.sha256(data).digest()
        )
        self._index_file.write(record)
        self._index_hash.update(record)
        self._zip_count += 1
        line = f"{source}\t{key}\t{image.mode}\t{image.width}\t{image.height}\t{digest}"
        self._write_manifest(line.encode("utf-8"))
        if self._sources and self._sources[-1].name == source:
            last = self._sources[-1]
            self._sources[-1] = SourceCount(name=source, count=last.count + 1)
        else:
            self._sources.append(SourceCount(name=source, count=1))
        self._count += 1
        return index

    def _write_manifest(self, line: bytes) -> None:
        self._manifest_file.write(line + b"\n")
        self._manifest_hash.update(line + b"\n")

    def close(self) -> Corpus:
        """Finish the last shard, write manifest/index/header, rename into place, and open."""
        if self._closed:
            if self.result is None:
                raise CorpusBuildError("writer was aborted")
            return self.result
        if not self._count:
            self.abort()
            raise CorpusBuildError(f"no images were added to {self.out}")
        self._finish_shard()
        self._manifest_file.close()
        self._index_file.close()
        fingerprint = self._manifest_hash.hexdigest()
        header = CorpusHeader(
            format=FORMAT_NAME,
            version=FORMAT_VERSION,
            fingerprint=fingerprint,
            num_images=self._count,
            sources=self._sources,
            manifest=FileRef(file=MANIFEST_FILE, sha256=fingerprint),
            index=FileRef(
                file=INDEX_FILE,
                sha256=self._index_hash.hexdigest(),
                record="shard u32, length u32, offset u64, sha256 of stored PNG (32 bytes), LE",
            ),
            shards=[ShardInfo.model_validate(entry) for entry in self._shards],
        )
        (self._tmp / HEADER_FILE).write_text(header.to_json(), "utf-8")
        self._closed = True
        _replace_dir(self._tmp, self.out)
        self.result = Corpus.open(self.out)
        return self.result

    def abort(self) -> None:
        self._manifest_file.close()
        self._index_file.close()
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        self._closed = True
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _zip_tell(self) -> int:
        if self._zip is None or self._zip.fp is None:  # pragma: no cover
            raise CorpusBuildError("internal: no open shard")
        return self._zip.fp.tell()

    def _start_shard(self, first_index: int) -> None:
        name = f"{SHARD_DIR}/shard-{len(self._shards):05d}.zip"
        self._zip = zipfile.ZipFile(self._tmp / name, "w", compression=zipfile.ZIP_STORED)
        self._zip_count = 0
        self._shards.append({"file": name, "first_index": first_index, "num_images": 0})

    def _finish_shard(self) -> None:
        if self._zip is None:
            return
        self._zip.close()
        self._zip = None
        entry = self._shards[-1]
        p = self._tmp / str(entry["file"])
        data = p.read_bytes()
        entry["num_images"] = self._zip_count
        entry["bytes"] = len(data)
        entry["sha256"] = hashlib.sha256(data).hexdigest()


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move a finished folder over `out`; the old one (if any) is removed only afterwards."""
    old: Path | None = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
