"""firmware_configs/: every device-class profile validates; the unit and broker files say what
the README promises."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
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


def _analyze_or_skip() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        if os.environ.get("CI"):
            raise AssertionError("systemd-analyze is required in CI (.ci/run installs it)")
        pytest.skip("systemd-analyze is not installed")
    return tool


def _installable_unit(folder: Path) -> Path:
    """The shipped unit and every class's drop-in, laid out as under /etc/systemd/system, with
    ExecStart pointing at this environment's plada-agent (verify checks it is executable)."""
    agent = Path(sys.prefix) / "bin" / "plada-agent"
    text = (ROOT / "plada-agent.service").read_text(encoding="utf-8")
    unit = folder / "plada-agent.service"
    unit.write_text(text.replace("/opt/plada/venv/bin/plada-agent", str(agent)), "utf-8")
    dropins = folder / "plada-agent.service.d"
    dropins.mkdir()
    for path in sorted(ROOT.glob("*.toml")):
        (dropins / f"{path.stem}.conf").write_text(load_profile(path).systemd_dropin(), "utf-8")
    return unit


def test_systemd_unit_and_dropins_verify_cleanly(tmp_path: Path) -> None:
    # Prepare
    tool = _analyze_or_skip()
    unit = _installable_unit(tmp_path)
    # Execute
    run = subprocess.run(
        [tool, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    # Assert: any warning (an unknown or misplaced key, a bad value) is a failure
    assert run.returncode == 0, run.stderr
    assert run.stdout + run.stderr == ""


def test_systemd_unit_security_exposure_stays_low(tmp_path: Path) -> None:
    # Prepare
    tool = _analyze_or_skip()
    unit = _installable_unit(tmp_path)
    # Execute
    run = subprocess.run(
        [tool, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    # Assert: the README reports 1.4 ("OK"); 3.8 before the hardening of issue 14
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", run.stdout)
    assert found is not None, run.stdout + run.stderr
    assert float(found.group(1)) <= 1.5


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


def test_commented_metrics_example_validates_when_uncommented(tmp_path: Path) -> None:
    # Prepare: the Pi 4 profile ships the [agent.metrics] table commented out (off by default)
    text = (ROOT / "raspberry-pi-4.toml").read_text(encoding="utf-8")
    assert (
        load_profile(ROOT / "raspberry-pi-4.toml")
        .agent_config(device_id="pi-1", overrides={"mqtt": {"username": "pi-1"}})
        .metrics.address
        is None
    )
    on = tmp_path / "raspberry-pi-4.toml"
    on.write_text(
        text.replace("# [agent.metrics]", "[agent.metrics]").replace("# listen =", "listen ="),
        encoding="utf-8",
    )
    # Execute
    config = load_profile(on).agent_config(
        device_id="pi-1", overrides={"mqtt": {"username": "pi-1"}}
    )
    # Assert
    assert config.metrics.address == ("127.0.0.1", 9464)
