"""Device-class profiles: ``firmware_configs/<class>.toml``.

A profile has two tables. ``[device]`` describes the class itself: the encoder spec it runs and the
resource limits of its service (rendered as a systemd drop-in: ``MemoryMax=``, ``MemoryHigh=``,
``CPUQuota=``). ``[agent]`` is a complete agent config (agent.config.AgentConfig) for that class
(encoder threads and batch size, backends, head hyper-parameters), with the fleet-wide paths of
a packaged install; ``device_config`` fills in a device id (and optionally overrides) to produce the
``/etc/plada/agent.toml`` of one device.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.config import AgentConfig, parse_config
from agent.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 devices (Jetson, JetPack 6)
    import tomli as tomllib

_MEMORY = re.compile(r"^[0-9]+[KMG]$")
_ENCODER_SPEC = re.compile(r"^[a-z][a-z0-9]*-[0-9]{2,4}(-int8)?$")  # plada.encoders spec string
PLACEHOLDER_ID = "change-me"


class DeviceSection(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device_class: str = Field(pattern=r"^[a-z0-9_-]{1,64}$", description="class name")
    description: str = Field(default="", description="hardware in one line")
    encoder: str = Field(description="encoder spec the class runs, e.g. lite0-64-int8")
    memory_max: str = Field(description="systemd MemoryMax= of the agent service, e.g. 768M")
    memory_high: str = Field(description="systemd MemoryHigh= (throttling starts here)")
    cpu_quota_percent: int = Field(ge=10, le=6400, description="systemd CPUQuota= in percent")

    @field_validator("encoder")
    @classmethod
    def _check_encoder(cls, value: str) -> str:
        if not _ENCODER_SPEC.match(value):
            raise ValueError(f"{value!r} is not an encoder spec like lite0-64-int8")
        return value

    @field_validator("memory_max", "memory_high")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not _MEMORY.match(value):
            raise ValueError(f"{value!r}: use a number with K, M or G, e.g. 768M")
        return value


class DeviceProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: DeviceSection
    agent: dict[str, Any]

    def __getitem__(self, table: str) -> Any:
        """A profile reads like the TOML it came from: `profile["agent"]`."""
        if table not in type(self).model_fields:
            raise KeyError(table)
        return getattr(self, table)

    def agent_config(
        self, *, device_id: str = PLACEHOLDER_ID, overrides: dict[str, Any] | None = None
    ) -> AgentConfig:
        return parse_config(self.agent_table(device_id=device_id, overrides=overrides))

    def agent_table(
        self, *, device_id: str, overrides: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The [agent] table with the device id set and overrides merged one level deep."""
        table = copy.deepcopy(self.agent)
        table["device_id"] = device_id
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(table.get(key), dict):
                table[key] = {**table[key], **value}
            else:
                table[key] = value
        return table

    def systemd_dropin(self) -> str:
        d = self.device
        return (
            f"# {d.device_class}: {d.description}\n[Service]\n"
            f"MemoryHigh={d.memory_high}\nMemoryMax={d.memory_max}\n"
            f"CPUQuota={d.cpu_quota_percent}%\n"
        )


def load_profile(path: Path) -> DeviceProfile:
    """Read and validate a profile; ConfigError names the file and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    try:
        profile = DeviceProfile.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{path}: invalid profile\n{exc}") from exc
    if profile.agent.get("device_class") != profile.device.device_class:
        raise ConfigError(f"{path}: agent.device_class must equal device.device_class")
    try:
        config = profile.agent_config()
    except ConfigError as exc:
        raise ConfigError(f"{path} [agent]: {exc}") from exc
    if config.encoder.file.stem != profile.device.encoder:
        raise ConfigError(
            f"{path}: agent.encoder.file {config.encoder.file.name} is not the class encoder "
            f"{profile.device.encoder}"
        )
    return profile


def dump_toml(table: dict[str, Any]) -> str:
    """TOML text of an agent config table (tomli-w; paths written as strings)."""
    return tomli_w.dumps(_plain(table))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value) if isinstance(value, Path) else value
