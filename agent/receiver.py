"""Chunked payloads, reassembled durably: every piece is on disk before it is acknowledged.

Pieces of one payload live under ``<state>/fleet/chunks/<payload sha256>/`` (``manifest.bin``,
``c-<piece hash>.bin``, and ``source.json``: the task whose topics they came on, so the chunks
still missing can be asked for by topic after a restart), so a download cut by a broker or device
restart resumes where it stopped. A manifest that arrives on the topics another payload is being
assembled from supersedes it: the publisher overwrote that payload's retained chunks.
Pieces arrive already parsed (plada.chunks.parse_chunk / parse_manifest): each header is parsed
once. At most `max_in_flight` payloads are assembled at once; when another one starts, the oldest
without a manifest goes first (chunks nobody announced: junk, or a publish replaced long ago),
then the oldest.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from plada.atomic import write_bytes_atomic
from plada.chunks import Chunk, Manifest, Reassembler, parse_chunk, parse_manifest
from plada.errors import ChunkError

logger = logging.getLogger(__name__)


class Source(BaseModel):
    """Where a payload's pieces are published: a task's own topics, or (task None) the one-task
    scheme's topics of the group."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str | None


_SOURCE = "source.json"


@dataclass(frozen=True)
class Complete:
    owner: str  # payload id
    data: bytes
    first_byte_at: float


@dataclass(frozen=True)
class Partial:
    owner: str
    received: int  # distinct chunk indices held
    missing: int | None  # None until the manifest says how many there are
    error: ChunkError | None = None  # a piece that did not fit (dropped; the rest is kept)


class Receiver:
    def __init__(
        self, folder: Path, *, is_known: Callable[[str], bool], max_in_flight: int = 3
    ) -> None:
        self.folder = folder
        self._is_known = is_known  # payload already installed, pending or refused
        self._max = max_in_flight
        self._assembling: dict[str, Reassembler] = {}
        self._first_byte: dict[str, float] = {}
        self._sources: dict[str, Source] = {}  # unknown for pieces stored by an older agent

    @property
    def busy(self) -> bool:
        return bool(self._assembling)

    def in_flight(self) -> dict[str, int]:
        """Payload id -> chunk indices held, for every payload being assembled."""
        return {owner: reasm.held() for owner, reasm in self._assembling.items()}

    def missing(self) -> list[tuple[Source, list[int]]]:
        """(where, chunk indices still missing) of every payload whose manifest and source are
        known: what the link subscribes to."""
        return [
            (self._sources[owner], reasm.missing())
            for owner, reasm in self._assembling.items()
            if reasm.has_manifest and owner in self._sources
        ]

    def add(
        self,
        piece: Chunk | Manifest,
        raw: bytes,
        *,
        received_at: float,
        source: Source | None = None,
    ) -> Complete | Partial:
        """Store `raw` durably and feed it. ChunkError only when the whole payload is bad (its
        joined chunks fail the manifest's hash); a single piece that does not fit comes back
        in Partial.error. `source`: the topics it came on."""
        owner = piece.owner
        manifest = isinstance(piece, Manifest)
        if manifest and source is not None:
            self.supersede(source, keep=owner)
        name = "manifest.bin" if manifest else f"c-{hashlib.sha256(raw).hexdigest()[:32]}.bin"
        target = self.folder / owner / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source is not None and owner not in self._sources:
            write_bytes_atomic(target.parent / _SOURCE, source.model_dump_json().encode())
            self._sources[owner] = source
        write_bytes_atomic(target, raw)  # durable before the ack
        self._first_byte.setdefault(owner, received_at)
        result = self._feed(owner, piece)
        if (
            isinstance(result, Partial)
            and result.error is not None
            and not self._kept(owner, piece)
        ):
            target.unlink(missing_ok=True)
        return result

    def supersede(self, source: Source, *, keep: str | None = None) -> None:
        """A new payload on `source`'s topics: any other payload assembled from them is gone
        from the broker (its chunk topics now carry the new payload's chunks, or nothing)."""
        for other in [o for o, s in self._sources.items() if s == source and o != keep]:
            if other in self._assembling:
                logger.info("partial payload %s superseded on its topics", other[:12])
            self.drop(other)

    def _kept(self, owner: str, piece: Chunk | Manifest) -> bool:
        """Whether a piece that raised was still taken (a manifest that dropped held copies)."""
        reasm = self._assembling.get(owner)
        return isinstance(piece, Manifest) and reasm is not None and reasm.has_manifest

    def _feed(self, owner: str, piece: Chunk | Manifest) -> Complete | Partial:
        reasm = self._assembling.get(owner)
        if reasm is None:
            self._evict()
            reasm = self._assembling[owner] = Reassembler()
        error: ChunkError | None = None
        try:
            if isinstance(piece, Manifest):
                reasm.add_manifest(piece)
            else:
                reasm.add_chunk(piece)
        except ChunkError as exc:
            error = exc
        if not reasm.is_complete():
            missing = len(reasm.missing()) if reasm.has_manifest else None
            return Partial(owner, received=reasm.held(), missing=missing, error=error)
        first = self._first_byte.get(owner, time.time())
        try:
            data = reasm.payload()
        finally:
            self.drop(owner)
        return Complete(owner, data, first)

    def _evict(self) -> None:
        while len(self._assembling) >= self._max:
            unannounced = [o for o, r in self._assembling.items() if not r.has_manifest]
            oldest = (unannounced or list(self._assembling))[0]
            logger.warning("dropping partial payload %s: too many in flight", oldest[:12])
            self.drop(oldest)

    def drop(self, owner: str) -> None:
        self._assembling.pop(owner, None)
        self._first_byte.pop(owner, None)
        self._sources.pop(owner, None)
        shutil.rmtree(self.folder / owner, ignore_errors=True)

    def reload(self) -> list[Complete]:
        """Feed the pieces stored before a restart; returns payloads that are now complete
        (a payload whose joined chunks fail its hash is dropped and logged)."""
        done: list[Complete] = []
        if not self.folder.exists():
            return done
        for folder in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            owner = folder.name
            if self._is_known(owner):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            source = _load_source(folder / _SOURCE)
            if source is not None:
                self._sources[owner] = source
            for path in sorted(folder.glob("*.bin")):
                self._first_byte.setdefault(owner, path.stat().st_mtime)
                try:
                    raw = path.read_bytes()
                    piece = parse_manifest(raw) if path.name == "manifest.bin" else parse_chunk(raw)
                    result = self._feed(owner, piece)
                except (OSError, ChunkError) as exc:
                    logger.warning("stored piece %s/%s dropped: %s", owner[:12], path.name, exc)
                    path.unlink(missing_ok=True)
                    if not folder.exists():  # the whole payload failed its hash: dropped
                        break
                    continue
                if isinstance(result, Complete):
                    done.append(result)
                    break
                if result.error is not None and not self._kept(owner, piece):
                    path.unlink(missing_ok=True)
        return done


def _load_source(path: Path) -> Source | None:
    """A payload's recorded source; None when absent (stored by an agent before resumable
    delivery: its manifest, sent again on a new subscription, records it) or unreadable."""
    if not path.exists():
        return None
    try:
        return Source.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        logger.warning("%s dropped: %s", path, exc)
        path.unlink(missing_ok=True)
        return None
