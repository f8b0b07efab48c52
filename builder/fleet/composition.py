"""The fleet's composition for `plada-build task --fleet-status`: its device classes and how many
devices each has, from a live fleet's retained statuses or from `plada-build fleet status --json`.

The fleet names classes as devices report them (`raspberry-pi-4`); the builder validates encoders
(`lite0-64-int8`). A class maps to its encoder through the device-class profiles
(`firmware_configs/<class>.toml`, [device] table), or is an encoder spec itself. A class neither
knows is an error naming it: validating the fleet without it would quietly ignore its devices.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import tomllib
from pydantic import BaseModel, ConfigDict, RootModel, ValidationError

from builder.errors import BuilderError
from plada.encoders import parse_encoder_spec
from plada.errors import PladaError

DEFAULT_PROFILES = Path("firmware_configs")


class StatusRow(BaseModel):
    """One device of `plada-build fleet status --json` (what the composition needs of it)."""

    model_config = ConfigDict(extra="allow")

    device_id: str
    device_class: str | None = None
    availability: str | None = None


class StatusFile(RootModel[list[StatusRow]]):
    pass


class ProfileDevice(BaseModel):
    """A device-class profile's [device] table (agent.profiles checks the rest)."""

    model_config = ConfigDict(extra="allow")

    device_class: str
    encoder: str


class ProfileFile(BaseModel):
    model_config = ConfigDict(extra="allow")

    device: ProfileDevice


@dataclass(frozen=True)
class FleetComposition:
    """Devices per fleet class, each class's encoder, and devices that report no class."""

    source: str
    counts: dict[str, int]  # fleet class -> devices
    encoders: dict[str, str]  # fleet class -> encoder spec
    unclassified: list[str]  # device ids without a class (never sent a status)

    def encoder_counts(self) -> dict[str, int]:
        """Devices per encoder (classes sharing an encoder add up), most devices first."""
        out: Counter[str] = Counter()
        for name, count in self.counts.items():
            out[self.encoders[name]] += count
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def _problem(exc: ValidationError, where: str) -> str:
    error = exc.errors()[0]
    loc = [str(p) for p in error["loc"]]
    if loc and loc[0].isdigit():
        head, loc = f"{where}: device {loc[0]}", loc[1:]
    else:
        head = where
    key = f" key {'.'.join(loc)!r}" if loc else ""
    return f"{head}{key}: {error['msg']} (got {error.get('input')!r})"


def read_status_file(path: Path) -> list[StatusRow]:
    """The devices of a `fleet status --json` file; BuilderError names the bad field."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise BuilderError(f"--fleet-status {path}: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        raise BuilderError(
            f"--fleet-status {path}: not JSON ({exc.msg}, line {exc.lineno})"
        ) from exc
    try:
        return StatusFile.model_validate(data).root
    except ValidationError as exc:
        raise BuilderError(_problem(exc, f"--fleet-status {path}")) from exc


def load_profiles(folder: Path) -> dict[str, str]:
    """Device class -> encoder spec, from every `<class>.toml` in the folder that has a [device]
    table (none: an empty map; a malformed one is named)."""
    out: dict[str, str] = {}
    if not Path(folder).is_dir():
        return out
    for path in sorted(Path(folder).glob("*.toml")):
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise BuilderError(f"device-class profile {path}: {exc}") from exc
        if "device" not in table:
            continue
        try:
            profile = ProfileFile.model_validate(table)
        except ValidationError as exc:
            raise BuilderError(_problem(exc, f"device-class profile {path}")) from exc
        out[profile.device.device_class] = profile.device.encoder
    return out


def is_encoder_spec(name: str) -> bool:
    """A spec of a known encoder model (lite0-64-int8, opennsfw-224): a class named after it."""
    try:
        return parse_encoder_spec(name).id == name
    except (PladaError, ValueError):
        return False


def resolve_classes(names: Sequence[str], profiles: Mapping[str, str]) -> dict[str, str]:
    """Fleet class -> encoder spec; BuilderError naming every class the builder does not know."""
    resolved: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        if name in profiles:
            resolved[name] = profiles[name]
        elif is_encoder_spec(name):
            resolved[name] = name
        else:
            unknown.append(name)
    if unknown:
        known = ", ".join(sorted(profiles)) or "none"
        raise BuilderError(
            f"device classes unknown to the builder: {', '.join(sorted(unknown))} (known "
            f"profiles: {known}; or name an encoder spec such as lite0-64-int8)"
        )
    return resolved


def composition_of(
    rows: Sequence[StatusRow], *, source: str, profiles: Mapping[str, str]
) -> FleetComposition:
    """Count devices per class (offline devices too: they will fetch the retained task)."""
    counts = Counter(r.device_class for r in rows if r.device_class)
    unclassified = sorted(r.device_id for r in rows if not r.device_class)
    if not counts:
        raise BuilderError(f"--fleet-status {source}: no device reports a device class")
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    return FleetComposition(
        source=source,
        counts=ordered,
        encoders=resolve_classes(list(ordered), profiles),
        unclassified=unclassified,
    )


def is_broker_url(source: str) -> bool:
    return source.startswith(("mqtt://", "mqtts://"))


def read_composition(
    source: str,
    *,
    profiles: Mapping[str, str],
    base_topic: str = "plada",
    timeout_s: float = 15.0,
) -> FleetComposition:
    """From a broker URL (the retained statuses, credentials from the environment as for
    `plada-build fleet status`) or a `fleet status --json` file."""
    if not is_broker_url(source):
        return composition_of(read_status_file(Path(source)), source=source, profiles=profiles)
    from builder.fleet.session import USERNAME_ENV, BrokerOptions, read_password
    from builder.fleet.status import fleet_status

    options = BrokerOptions(
        url=source,
        username=os.environ.get(USERNAME_ENV) or None,
        password=read_password(password_file=None),
        timeout_s=timeout_s,
    )
    views = fleet_status(options, base_topic=base_topic)
    rows = [
        StatusRow(
            device_id=v.device_id,
            device_class=v.status.device_class if v.status else None,
            availability=v.availability,
        )
        for v in views
    ]
    return composition_of(rows, source=source, profiles=profiles)
