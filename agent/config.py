"""AgentConfig: the device's TOML config, validated; every error names the key path.

Example (relative paths are resolved against the config file's folder)::

    device_id = "pi-kitchen-01"
    device_class = "raspberry_pi_4"

    [corpus]
    path = "/var/lib/plada/ref-v1"

    [encoder]
    file = "/opt/plada/encoders/lite0-64-int8.onnx"   # sidecar lite0-64-int8.json beside it
    backend = "onnxruntime"                            # or "tflite"
    threads = 2
    batch_size = 32

    [state]
    dir = "/var/lib/plada/state"

    [cache]
    dir = "/var/lib/plada/cache"

    [trust]
    public_keys = ["/etc/plada/keys/builder.pem"]
    allow_unsigned = false

    [head]
    backend = "ort-graph"          # "ort-graph" | "ort-training" | "numpy"
    epochs = 10
    learning_rate = 0.001

    [mqtt]
    broker = "mqtts://broker.example:8883"

    [metrics]                       # optional: a Prometheus endpoint, off without this table
    listen = "127.0.0.1:9464"
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.errors import ConfigError
from agent.mqtt_config import MqttConfig
from plada.head import HeadHyperParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 devices
    import tomli as tomllib

_ID_PATTERN = r"^[a-z0-9_-]{1,64}$"
_DEFAULT_HP = HeadHyperParams()
_PATH_KEYS = (
    ("corpus", "path"),
    ("encoder", "file"),
    ("state", "dir"),
    ("cache", "dir"),
    ("mqtt", "ca_file"),
    ("mqtt", "cert_file"),
    ("mqtt", "key_file"),
    ("mqtt", "password_file"),
    ("mqtt", "probe_dir"),
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusConfig(_Section):
    path: Path = Field(description="folder of the local reference corpus (plada corpus format)")
    verify_reads: bool = Field(
        default=True,
        description="check every corpus image read against its sha256 (stored bytes and decoded "
        "pixels): a flipped bit is a named device fault instead of a wrong training image; "
        "costs tens of microseconds per image, against milliseconds to embed it",
    )


class EncoderConfig(_Section):
    file: Path = Field(
        description="encoder exported by `plada-build export-encoder` (.onnx, or .tflite for the "
        "tflite backend); its JSON sidecar <stem>.json must sit beside it"
    )
    backend: Literal["onnxruntime", "tflite"] = Field(
        default="onnxruntime",
        description="runtime for the encoder: onnxruntime (default) or tflite",
    )
    threads: int = Field(default=2, ge=1, le=64, description="intra-op threads for the encoder")
    batch_size: int = Field(default=32, ge=1, le=4096, description="images per encoder call")


class StateConfig(_Section):
    dir: Path = Field(description="folder for the model store and other device state")
    max_tasks: int = Field(
        default=8,
        ge=1,
        le=64,
        description="tasks this device holds at once; a new task beyond it is refused and "
        "reported (never is an installed task dropped to make room): retire one first",
    )


class CacheConfig(_Section):
    dir: Path = Field(description="folder for the corpus feature cache")
    dtype: Literal["float16", "float32"] = Field(
        default="float16",
        description="storage type of cached features (float16 halves the disk size)",
    )
    block_size: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="images per cache block (the unit of resumption)",
    )


class TrustConfig(_Section):
    public_keys: list[Path] = Field(
        default_factory=list, description="PEM Ed25519 public keys whose payload signatures count"
    )
    allow_unsigned: bool = Field(
        default=False, description="accept unsigned payloads (testing only; never on a real fleet)"
    )


class HeadConfig(_Section):
    backend: Literal["ort-graph", "ort-training", "numpy"] = Field(
        default="ort-graph",
        description="head trainer: ort-graph (plain onnxruntime, any CPU), ort-training "
        "(onnxruntime-training, x86_64 only) or numpy",
    )
    threads: int = Field(
        default=1, ge=1, le=64, description="onnxruntime threads for the ort-graph trainer"
    )
    epochs: int = Field(
        default=_DEFAULT_HP.epochs, ge=1, le=10_000, description="passes over the data"
    )
    learning_rate: float = Field(
        default=_DEFAULT_HP.learning_rate, gt=0, le=10, description="AdamW peak learning rate"
    )
    weight_decay: float = Field(
        default=_DEFAULT_HP.weight_decay, ge=0, le=10, description="AdamW decoupled weight decay"
    )
    batch_size: int = Field(
        default=_DEFAULT_HP.batch_size, ge=1, le=65_536, description="examples per step"
    )
    class_balanced: bool = Field(
        default=_DEFAULT_HP.class_balanced, description="sample every class equally often"
    )
    label_smoothing: float = Field(
        default=_DEFAULT_HP.label_smoothing,
        ge=0,
        lt=1,
        description="label smoothing of the targets",
    )
    seed: int = Field(
        default=_DEFAULT_HP.seed, ge=0, description="seed of batch order and initial weights"
    )
    schedule: Literal["cosine", "constant"] = Field(
        default=_DEFAULT_HP.schedule, description="learning-rate schedule over all steps"
    )

    min_steps: int = Field(
        default=_DEFAULT_HP.min_steps,
        ge=0,
        le=1_000_000,
        description="small selections train for more epochs until at least this many steps",
    )
    max_steps: int = Field(
        default=_DEFAULT_HP.max_steps,
        ge=0,
        le=1_000_000,
        description="large selections train for fewer (whole) epochs, at most this many steps; "
        "0 = no cap",
    )

    @model_validator(mode="after")
    def _steps_in_order(self) -> HeadConfig:
        if self.max_steps and self.max_steps < self.min_steps:
            raise ValueError(
                f"max_steps ({self.max_steps}) must be >= min_steps ({self.min_steps}) or 0"
            )
        return self

    def hyper_params(self) -> HeadHyperParams:
        return HeadHyperParams(
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            class_balanced=self.class_balanced,
            label_smoothing=self.label_smoothing,
            seed=self.seed,
            schedule=self.schedule,
            min_steps=self.min_steps,
            max_steps=self.max_steps,
        )


class RecoveryConfig(_Section):
    retry_min_s: float = Field(
        default=30.0,
        gt=0,
        le=86_400,
        description="wait before retrying a task after a device fault (corpus, cache, disk, "
        "memory); doubles with each failure",
    )
    retry_max_s: float = Field(
        default=1800.0, gt=0, le=7 * 86_400, description="longest wait between two retries"
    )
    watch_interval_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="how often a device with a pending fault checks whether its cause changed "
        "(corpus shards, encoder file) to retry at once",
    )

    @model_validator(mode="after")
    def _retry_in_order(self) -> RecoveryConfig:
        if self.retry_max_s < self.retry_min_s:
            raise ValueError("retry_max_s must be >= retry_min_s")
        return self


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` -> (host, port); ValueError naming what is wrong.

    Only IP literals: the endpoint binds to exactly the address configured, never to whatever a
    host name resolves to on the day.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} is not <ip>:<port> (e.g. 127.0.0.1:9464 or [::1]:9464)")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    if address.version == 6 and not bracketed:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65_535:
        raise ValueError(f"{value!r}: port must be a number from 1 to 65535")
    return str(address), int(port_text)


class MetricsConfig(_Section):
    listen: str | None = Field(
        default=None,
        description="address of the Prometheus endpoint, <ip>:<port> (e.g. 127.0.0.1:9464); "
        "unset = no endpoint. It binds to this address only: 0.0.0.0 exposes it on every "
        "interface, so prefer loopback or the management network's address",
    )

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str | None) -> str | None:
        if value is not None:
            parse_listen(value)
        return value

    @property
    def address(self) -> tuple[str, int] | None:
        """(host, port) to bind, or None when the endpoint is off."""
        return None if self.listen is None else parse_listen(self.listen)


class AgentConfig(_Section):
    device_id: str = Field(pattern=_ID_PATTERN, description="this device's id, [a-z0-9_-]{1,64}")
    device_class: str = Field(
        pattern=_ID_PATTERN, description="device class (firmware_configs/<class>.toml), e.g. rpi4"
    )
    corpus: CorpusConfig = Field(description="the local reference corpus")
    encoder: EncoderConfig = Field(description="the frozen image encoder")
    state: StateConfig = Field(description="where trained heads and device state live")
    cache: CacheConfig = Field(description="where corpus features are cached")
    trust: TrustConfig = Field(
        default_factory=lambda: TrustConfig(), description="payload signature trust"
    )
    head: HeadConfig = Field(default_factory=HeadConfig, description="head training")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description="broker connection")
    recovery: RecoveryConfig = Field(
        default_factory=RecoveryConfig, description="retries after device faults"
    )
    metrics: MetricsConfig = Field(
        default_factory=MetricsConfig, description="Prometheus endpoint (off by default)"
    )

    @model_validator(mode="after")
    def _needs_a_key_or_unsigned(self) -> AgentConfig:
        if not self.trust.public_keys and not self.trust.allow_unsigned:
            raise ValueError(
                "trust.public_keys is empty and trust.allow_unsigned is false: "
                "no payload could ever be accepted"
            )
        return self


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative path values absolute against `base` (the config file's folder)."""
    out = dict(data)

    def fix(section: str, key: str) -> None:
        part = out.get(section)
        if isinstance(part, dict) and isinstance(part.get(key), str):
            out[section] = {**part, key: str(base / Path(part[key]).expanduser())}

    for section, key in _PATH_KEYS:
        fix(section, key)
    trust = out.get("trust")
    if isinstance(trust, dict) and isinstance(trust.get("public_keys"), list):
        keys = [
            str(base / Path(k).expanduser()) if isinstance(k, str) else k
            for k in trust["public_keys"]
        ]
        out["trust"] = {**trust, "public_keys": keys}
    return out


def parse_config(
    data: dict[str, Any], *, base_dir: Path | None = None, source: str = "config"
) -> AgentConfig:
    """Validate an already-parsed TOML table; ConfigError lists every bad key path."""
    if base_dir is not None:
        data = _resolve_paths(data, base_dir)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: invalid config\n{_format_errors(exc)}") from exc


def load_config(path: Path) -> AgentConfig:
    """Read and validate the TOML config at `path` (relative paths resolve against its folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, base_dir=path.resolve().parent, source=str(path))
