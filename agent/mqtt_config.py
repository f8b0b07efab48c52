"""The [mqtt] section of the agent config (owned by the fleet/link work; AgentConfig embeds it).

Secrets never live in the TOML: the password comes from ``password_file``, the environment variable
named by ``password_env``, or a systemd credential (``LoadCredential=`` puts it under
``$CREDENTIALS_DIRECTORY``) named by ``password_credential``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agent.errors import ConfigError
from plada.topics import BrokerUrl, TopicScheme, parse_broker_url, validate_segment


class MqttConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    broker: str = Field(
        default="mqtt://127.0.0.1:1883", description="mqtt:// or mqtts:// URL of the broker"
    )
    base_topic: str = Field(default="plada", description="topic prefix shared by the fleet")
    group: str = Field(
        default="default", description="fleet group whose task topic this device follows"
    )
    client_id: str | None = Field(
        default=None,
        description="stable MQTT client id (persistent session); default plada-<device_id>",
    )
    protocol: Literal["5", "3.1.1"] = Field(
        default="5", description="MQTT protocol version; 5 preferred, 3.1.1 for older brokers"
    )
    keepalive_s: int = Field(default=60, ge=5, le=3600, description="MQTT keepalive in seconds")
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=0,
        description="MQTT 5 session expiry: how long the broker keeps queued tasks while offline",
    )
    reconnect_min_s: float = Field(default=1.0, gt=0, description="first reconnect delay (doubles)")
    reconnect_max_s: float = Field(default=120.0, gt=0, description="longest reconnect delay")
    status_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="seconds between periodic status publishes (and watchdog ticks)",
    )
    progress_interval_s: float = Field(
        default=5.0,
        ge=0,
        description="while a task downloads or trains, its progress is published at most once "
        "per this many seconds, counted from the start of the install (ready or a fault go out "
        "at once, so a shorter install sends only its outcome): each status is ~1 kB up and an "
        "acknowledgement down on a thin link",
    )
    username: str | None = Field(
        default=None, description="broker username (usually the device id)"
    )
    password_file: Path | None = Field(default=None, description="file holding the broker password")
    password_env: str | None = Field(
        default=None, description="environment variable holding the broker password"
    )
    password_credential: str | None = Field(
        default=None,
        description="systemd credential name under $CREDENTIALS_DIRECTORY (LoadCredential=)",
    )
    ca_file: Path | None = Field(
        default=None, description="CA bundle for mqtts:// (default: system CAs)"
    )
    cert_file: Path | None = Field(
        default=None, description="client certificate (PEM) for mutual TLS"
    )
    key_file: Path | None = Field(
        default=None, description="client private key (PEM) for mutual TLS"
    )
    max_payload_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="largest task payload accepted (whole or reassembled from chunks)",
    )
    probe_dir: Path | None = Field(
        default=None,
        description="optional labelled ImageFolder (root/<class>/<image>); the accuracy on it "
        "is reported in each task's result message",
    )
    idle_warm_after_s: float = Field(
        default=60.0,
        ge=0,
        description="after this many seconds without task traffic the daemon warms its feature "
        "cache a block at a time in the background; 0 disables",
    )
    home_assistant: bool = Field(
        default=False, description="publish Home Assistant MQTT discovery (an update entity)"
    )
    home_assistant_prefix: str = Field(
        default="homeassistant", description="Home Assistant discovery prefix"
    )

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        parse_broker_url(value)
        return value

    @field_validator("base_topic")
    @classmethod
    def _check_base(cls, value: str) -> str:
        TopicScheme(value)
        return value

    @field_validator("group")
    @classmethod
    def _check_group(cls, value: str) -> str:
        return validate_segment(value, what="group")

    @model_validator(mode="after")
    def _check_combinations(self) -> MqttConfig:
        sources = [self.password_file, self.password_env, self.password_credential]
        if sum(s is not None for s in sources) > 1:
            raise ValueError("set at most one of password_file, password_env, password_credential")
        if any(s is not None for s in sources) and self.username is None:
            raise ValueError("a password source is set but username is missing")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self

    @property
    def url(self) -> BrokerUrl:
        return parse_broker_url(self.broker)

    @property
    def topics(self) -> TopicScheme:
        return TopicScheme(self.base_topic)

    def effective_client_id(self, device_id: str) -> str:
        return self.client_id or f"plada-{device_id}"

    def resolve_password(self) -> str | None:
        """Read the password from its configured source; ConfigError names the key at fault."""
        if self.password_file is not None:
            return _read_secret(self.password_file, key="mqtt.password_file")
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if not value:
                raise ConfigError(
                    f"mqtt.password_env: environment variable {self.password_env} is not set"
                )
            return value
        if self.password_credential is not None:
            directory = os.environ.get("CREDENTIALS_DIRECTORY")
            if not directory:
                raise ConfigError(
                    "mqtt.password_credential: $CREDENTIALS_DIRECTORY is not set "
                    "(run under systemd with LoadCredential=)"
                )
            path = Path(directory) / self.password_credential
            return _read_secret(path, key="mqtt.password_credential")
        return None

    def check_files(self) -> None:
        """Raise ConfigError if a configured TLS or probe path is missing."""
        for key in ("ca_file", "cert_file", "key_file", "password_file"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"mqtt.{key}: file {path} does not exist")
        if self.probe_dir is not None and not self.probe_dir.is_dir():
            raise ConfigError(f"mqtt.probe_dir: folder {self.probe_dir} does not exist")
        if (self.ca_file or self.cert_file) and not self.url.tls:
            raise ConfigError("mqtt.broker: TLS files are set but the URL is not mqtts://")


def _read_secret(path: Path, *, key: str) -> str:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from exc
    if not value:
        raise ConfigError(f"{key}: {path} is empty")
    return value
