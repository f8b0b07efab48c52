"""build-info.json: what `make data` built (recipe, corpus fingerprint, timings), read back to
decide whether the data is up to date and by the corpus benchmark."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

INFO_FILE = "build-info.json"


class CorpusStamp(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    fingerprint: str


class BuildInfo(BaseModel):
    """The keys that are read back are typed; the rest (packages, targets, leakage, ...) is kept
    for people and checked by nothing."""

    model_config = ConfigDict(extra="allow", frozen=True)

    recipe_version: int
    profile: str
    corpus: CorpusStamp
    timings_s: dict[str, float] = {}


def read_build_info(data: Path) -> BuildInfo | None:
    """DATA/build-info.json, or None when it is missing or not of this shape (then rebuild)."""
    try:
        return BuildInfo.model_validate_json((data / INFO_FILE).read_bytes())
    except (OSError, ValidationError):
        return None
