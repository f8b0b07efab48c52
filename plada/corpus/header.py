"""corpus.json: the header of a corpus folder, written by the writer and checked by every reader.

    {"format": "plada-corpus", "version": 1, "fingerprint": hex, "num_images": N,
     "sources": [{"name", "count"}], "manifest": {"file", "sha256"},
     "index": {"file", "sha256", "record"},
     "shards": [{"file", "first_index", "num_images", "bytes", "sha256"}]}

Errors are CorpusCorruptError naming the file and the key.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from plada.errors import CorpusCorruptError

FORMAT_NAME: Final = "plada-corpus"
FORMAT_VERSION = 1
HEADER_FILE = "corpus.json"


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ShardInfo(_Part):
    """One shard file: which images it holds, its size and hash."""

    file: str  # relative to the corpus directory
    first_index: int = Field(ge=0)
    num_images: int = Field(ge=0)
    num_bytes: int = Field(ge=0, alias="bytes")
    sha256: str

    @field_validator("file")
    @classmethod
    def _inside(cls, value: str) -> str:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts:
            raise ValueError(f"shard path {value!r} leaves the corpus")
        return value


class FileRef(_Part):
    file: str
    sha256: str
    record: str | None = None


class SourceCount(_Part):
    name: str
    count: int = Field(ge=0)


class CorpusHeader(_Part):
    format: Literal["plada-corpus"]
    version: int
    fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$")
    num_images: int = Field(ge=0)
    sources: list[SourceCount] = []
    manifest: FileRef | None = None
    index: FileRef
    shards: list[ShardInfo]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True), indent=1) + "\n"


def read_header(path: Path) -> CorpusHeader:
    """Read and check `path` (a corpus.json) against the format this reader knows."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorpusCorruptError(f"{path}: unreadable JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise CorpusCorruptError(f"{path}: top level must be an object")
    if raw.get("format") != FORMAT_NAME:
        raise CorpusCorruptError(f"{path}: key 'format' must be {FORMAT_NAME!r}")
    if isinstance(raw.get("version"), int) and raw["version"] != FORMAT_VERSION:
        raise CorpusCorruptError(
            f"{path}: format version {raw['version']} is not supported (this reader: "
            f"{FORMAT_VERSION})"
        )
    try:
        return CorpusHeader.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise CorpusCorruptError(f"{path}: key {where!r}: {error['msg']}") from exc
