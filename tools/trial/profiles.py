"""Named link profiles: validated records loaded from a TOML file (``profiles.toml`` by default).

    [profile.lora]
    description = "LoRa gateway back-haul"
    source = "where the numbers come from"
    down = { rate_kbit = 9.6, loss_percent = 5, queue_ms = 2000 }   # broker -> device
    up = { rate_kbit = 9.6, loss_percent = 5, queue_ms = 2000 }     # device -> broker
    drops = { every_s = 30, duration_s = 2 }                         # optional

A direction without ``rate_kbit`` is not shaped; ``loss_percent`` is applied in steps of 0.01 %.
Every error names the file and the field (``profile.lora.down.rate_kbit: ...``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import tomllib
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tools.trial.errors import ProfileError

DEFAULT_PROFILES = Path(__file__).with_name("profiles.toml")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


class Direction(BaseModel):
    """One direction of a link: token-bucket rate, its queue, and random loss."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rate_kbit: float | None = Field(
        default=None, gt=0, le=10_000_000, description="tbf rate in kbit/s; absent: not shaped"
    )
    queue_ms: float = Field(
        default=500.0, gt=0, le=60_000, description="tbf latency: longest wait in the queue"
    )
    loss_percent: float = Field(default=0.0, ge=0, lt=100, description="random loss, 0.01 % steps")

    @property
    def loss_basis_points(self) -> int:
        """Loss in 1/10000: the threshold of ``numgen random mod 10000``."""
        return round(self.loss_percent * 100)

    @property
    def rate_bit(self) -> int | None:
        return None if self.rate_kbit is None else round(self.rate_kbit * 1000)


class Drops(BaseModel):
    """Scheduled link drops: starts a mean ``every_s`` apart (exponential), ``duration_s`` long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every_s: float = Field(gt=0, le=86_400, description="mean time between drop starts")
    duration_s: float = Field(gt=0, le=3_600, description="how long the link stays down")

    @model_validator(mode="after")
    def _shorter_than_interval(self) -> Drops:
        if self.duration_s >= self.every_s:
            raise ValueError(
                f"duration_s ({self.duration_s:g}) must be shorter than every_s ({self.every_s:g})"
            )
        return self


class LinkProfile(BaseModel):
    """A named link: both directions, optional drops, and where the numbers come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = Field(min_length=1)
    source: str = Field(min_length=10, description="the documented origin of the numbers")
    down: Direction = Field(description="broker -> device")
    up: Direction = Field(description="device -> broker")
    drops: Drops | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and not _NAME.match(str(data.get("name", ""))):
            raise ValueError(f"profile name {data.get('name')!r}: use [a-z0-9-], 1-32 chars")
        return data


def _format_errors(exc: ValidationError, prefix: str) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in (prefix, *error["loc"]))
        message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_profiles(data: dict[str, Any], *, source: str = "profiles") -> dict[str, LinkProfile]:
    """Validate a parsed TOML document; ProfileError lists every bad field."""
    unknown = sorted(set(data) - {"profile"})
    if unknown:
        raise ProfileError(f"{source}: invalid profiles\n  {unknown[0]}: unknown key")
    tables = data.get("profile")
    if not isinstance(tables, dict) or not tables:
        raise ProfileError(f"{source}: invalid profiles\n  profile: no [profile.<name>] table")
    profiles: dict[str, LinkProfile] = {}
    problems: list[str] = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            problems.append(f"  profile.{name}: not a table")
            continue
        try:
            profiles[name] = LinkProfile.model_validate({**table, "name": name})
        except ValidationError as exc:
            problems.append(_format_errors(exc, f"profile.{name}"))
    if problems:
        raise ProfileError(f"{source}: invalid profiles\n" + "\n".join(problems))
    return profiles


def load_profiles(path: Path = DEFAULT_PROFILES) -> dict[str, LinkProfile]:
    """Read and validate a profile file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profiles: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path}: not valid TOML: {exc}") from exc
    return parse_profiles(data, source=str(path))


def get_profile(profiles: dict[str, LinkProfile], name: str) -> LinkProfile:
    try:
        return profiles[name]
    except KeyError:
        known = ", ".join(sorted(profiles))
        raise ProfileError(f"unknown link profile {name!r}; known: {known}") from None
