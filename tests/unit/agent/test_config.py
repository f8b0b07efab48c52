"""AgentConfig: TOML parsing, defaults, and errors that name the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import AgentConfig, load_config, parse_config
from agent.errors import ConfigError

_MINIMAL = """
device_id = "pi-01"
device_class = "rpi4"
[corpus]
path = "corpus"
[encoder]
file = "enc/lite0-64-int8.onnx"
[state]
dir = "/var/lib/plada/state"
[cache]
dir = "cache"
[trust]
public_keys = ["keys/builder.pem"]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_load_config_resolves_relative_paths_and_defaults(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, _MINIMAL)
    # Execute
    config = load_config(path)
    # Assert
    assert config.corpus.path == tmp_path / "corpus"
    assert config.encoder.file == tmp_path / "enc/lite0-64-int8.onnx"
    assert config.state.dir == Path("/var/lib/plada/state")
    assert config.trust.public_keys == [tmp_path / "keys/builder.pem"]
    assert config.encoder.backend == "onnxruntime"
    assert config.head.backend == "ort-graph"
    assert config.head.hyper_params().epochs == config.head.epochs
    assert config.mqtt.base_topic == "plada"


def test_load_config_names_unknown_and_missing_keys(tmp_path: Path) -> None:
    # Prepare
    text = _MINIMAL.replace('dir = "cache"', 'dri = "cache"') + "\n[head]\nepoch = 3\n"
    path = _write(tmp_path, text)
    # Execute
    with pytest.raises(ConfigError) as info:
        load_config(path)
    # Assert
    message = str(info.value)
    assert "cache.dir: Field required" in message
    assert "cache.dri: unknown key" in message
    assert "head.epoch: unknown key" in message
    assert str(path) in message


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (("[encoder]", '[encoder]\nbackend = "tensorrt"'), "encoder.backend"),
        (("[encoder]", "[encoder]\nthreads = 0"), "encoder.threads"),
        (('device_id = "pi-01"', 'device_id = "Pi 01"'), "device_id"),
        (("[state]", '[head]\nbackend = "torch"\n[state]'), "head.backend"),
        (("[state]", "[head]\nlabel_smoothing = 1.5\n[state]"), "head.label_smoothing"),
        (("[state]", "[head]\nmax_steps = -1\n[state]"), "head.max_steps"),
    ],
)
def test_load_config_rejects_bad_values_naming_the_key(
    tmp_path: Path, edit: tuple[str, str], key: str
) -> None:
    # Prepare
    path = _write(tmp_path, _MINIMAL.replace(*edit))
    # Execute / Assert
    with pytest.raises(ConfigError, match=rf"{key}: "):
        load_config(path)


def test_load_config_requires_a_trusted_key_unless_unsigned_allowed(tmp_path: Path) -> None:
    # Prepare
    no_keys = _MINIMAL.replace('public_keys = ["keys/builder.pem"]', "")
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"trust\.public_keys is empty"):
        load_config(_write(tmp_path, no_keys))
    config = load_config(_write(tmp_path, no_keys + "allow_unsigned = true\n"))
    assert config.trust.allow_unsigned


def test_load_config_reports_bad_toml_and_missing_file(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "device_id = \n"))
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")


def test_parse_config_embeds_mqtt_section() -> None:
    # Prepare
    data = {
        "device_id": "d1",
        "device_class": "c1",
        "corpus": {"path": "/c"},
        "encoder": {"file": "/e.onnx"},
        "state": {"dir": "/s"},
        "cache": {"dir": "/k"},
        "trust": {"allow_unsigned": True},
        "mqtt": {"group": "kitchen", "bogus": 1},
    }
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"mqtt\.bogus: unknown key"):
        parse_config(data)
    del data["mqtt"]["bogus"]  # type: ignore[attr-defined]
    assert isinstance(parse_config(data), AgentConfig)
    assert parse_config(data).mqtt.group == "kitchen"


def test_load_config_names_max_steps_below_min_steps(tmp_path: Path) -> None:
    path = _write(tmp_path, _MINIMAL.replace("[state]", "[head]\nmax_steps = 100\n[state]"))
    with pytest.raises(ConfigError, match=r"max_steps \(100\) must be >= min_steps"):
        load_config(path)


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, _MINIMAL)
    # Execute
    config = load_config(path)
    # Assert
    assert config.metrics.listen is None
    assert config.metrics.address is None


@pytest.mark.parametrize(
    ("listen", "address"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:1", ("::1", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),  # noqa: S104 - parsed, never bound
    ],
)
def test_metrics_listen_parses_ip_and_port(
    tmp_path: Path, listen: str, address: tuple[str, int]
) -> None:
    # Prepare
    path = _write(tmp_path, _MINIMAL + f'[metrics]\nlisten = "{listen}"\n')
    # Execute
    config = load_config(path)
    # Assert
    assert config.metrics.address == address


@pytest.mark.parametrize(
    ("listen", "why"),
    [
        ("9464", "not <ip>:<port>"),
        ("localhost:9464", "not an IP address"),
        ("127.0.0.1:0", "port must be"),
        ("127.0.0.1:70000", "port must be"),
        ("127.0.0.1:http", "port must be"),
        ("::1:9464", "brackets"),
        ("999.1.1.1:9464", "not an IP address"),
    ],
)
def test_bad_metrics_listen_is_a_named_error(tmp_path: Path, listen: str, why: str) -> None:
    # Prepare
    path = _write(tmp_path, _MINIMAL + f'[metrics]\nlisten = "{listen}"\n')
    # Execute
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    # Assert
    assert "metrics.listen" in str(excinfo.value)
    assert why in str(excinfo.value)


def test_unknown_metrics_key_is_named(tmp_path: Path) -> None:
    # Prepare
    path = _write(tmp_path, _MINIMAL + "[metrics]\nport = 9464\n")
    # Execute
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    # Assert
    assert "metrics.port: unknown key" in str(excinfo.value)
