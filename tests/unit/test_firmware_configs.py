"""firmware_configs/: every device-class profile validates; the unit and broker files say what
the README promises."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from agent.config import parse_config
from agent.errors import ConfigError
from agent.profiles import dump_toml, load_profile

ROOT = Path(__file__).resolve().parents[2] / "firmware_configs"
CLASSES = ("raspberry-pi-4", "raspberry-pi-5", "jetson-orin-nano", "x86-dev")


def test_firmware_configs_one_profile_per_device_class() -> None:
    assert sorted(p.stem for p in ROOT.glob("*.toml")) == sorted(CLASSES)


@pytest.mark.parametrize("path", sorted(ROOT.glob("*.toml")), ids=lambda p: p.stem)
def test_firmware_profile_validates(path: Path) -> None:
    # Execute
    profile = load_profile(path)
    config = profile.agent_config(
        device_id="pi-kitchen-01", overrides={"mqtt": {"username": "pi-kitchen-01"}}
    )
    # Assert
    assert profile.device.device_class == path.stem == config.device_class
    assert config.encoder.threads >= 1 and config.encoder.batch_size >= 1
    assert config.mqtt.url.tls
    assert config.trust.allow_unsigned is False
    assert "MemoryMax=" in profile.systemd_dropin()


def test_firmware_profile_round_trips_through_toml(tmp_path: Path) -> None:
    # Prepare
    profile = load_profile(ROOT / "raspberry-pi-4.toml")
    table = profile.agent_table(device_id="pi-9", overrides={"mqtt": {"username": "pi-9"}})
    # Execute
    import tomllib

    reparsed = parse_config(tomllib.loads(dump_toml(table)))
    # Assert
    assert reparsed == profile.agent_config(
        device_id="pi-9", overrides={"mqtt": {"username": "pi-9"}}
    )


def test_firmware_profile_errors_name_the_key(tmp_path: Path) -> None:
    # Prepare
    text = (ROOT / "x86-dev.toml").read_text(encoding="utf-8").replace("threads = 2", "thread = 2")
    bad = tmp_path / "x86-dev.toml"
    bad.write_text(text, encoding="utf-8")
    # Execute / Assert
    with pytest.raises(ConfigError, match=r"encoder\.thread"):
        load_profile(bad)


def test_systemd_unit_has_the_promised_settings() -> None:
    # Prepare
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "plada-agent.service", encoding="utf-8")
    service = unit["Service"]
    # Assert
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "78"
    assert service["User"] == "plada"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "plada"
    assert service["LoadCredential"].startswith("mqtt_password:")
    assert "plada-agent run" in service["ExecStart"]


def test_broker_acl_keeps_devices_to_their_own_topics() -> None:
    lines = [
        line.split()
        for line in (ROOT / "mosquitto.acl").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    patterns = [tuple(words[1:]) for words in lines if words[0] == "pattern"]
    assert ("read", "plada/group/+/task/#") in patterns
    assert ("readwrite", "plada/device/%u/#") in patterns
    assert not any(
        access in ("write", "readwrite") and "group" in topic for access, topic in patterns
    )
