"""tools.demo: agent plans from firmware_configs, the TOML it writes, the table it prints."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import tomllib

from agent.config import parse_config
from agent.profiles import dump_toml as _toml
from tools.demo.agents import agent_table, demo_tasks, link_probe_dir, plan_agents, probe_dir
from tools.demo.agents import device_profile as _profile
from tools.demo.table import print_table
from tools.devbroker import Broker


def test_plan_agents_uses_two_encoders_by_default(tmp_path: Path) -> None:
    # Execute
    plans = plan_agents("raspberry-pi-4:2,x86-dev:1", tmp_path)
    # Assert
    assert [p.device_id for p in plans] == ["rpi-4-1", "rpi-4-2", "x86-dev-1"]
    assert len({p.encoder for p in plans}) == 2


def test_demo_toml_is_a_valid_agent_config(tmp_path: Path) -> None:
    # Prepare
    table = dict(_profile("x86-dev")["agent"])
    table["device_id"] = "x86-dev-1"
    table["mqtt"] = {"broker": "mqtt://127.0.0.1:1", "group": "demo", "probe_dir": 'a "b"'}
    # Execute
    config = parse_config(tomllib.loads(_toml(table)))
    # Assert
    assert config.device_id == "x86-dev-1"
    assert str(config.mqtt.probe_dir) == 'a "b"'


def test_print_table_lists_every_agent(tmp_path: Path) -> None:
    # Prepare
    plans = plan_agents("x86-dev:1", tmp_path)
    results = {
        "x86-dev-1": {
            "probe_accuracy": 0.8,
            "finished_at": 12.5,
            "time_to_model_s": 1.25,
            "bytes_received": 2000,
        }
    }
    report = {
        "task": "fashion",
        "version": 1,
        "num_indices": 300,
        "strategy": "random",
        "teacher": {"encoder": "lite1-96"},
        "teacher_accuracy": 0.9,
        "devices": {"lite1-96": {"accuracy": 0.79, "oracle_accuracy": 0.85}},
    }
    # Execute
    table = print_table(plans, results, report, payload_bytes=2000, published_at=10.0)
    # Assert
    row = next(line for line in table.splitlines() if line.startswith("x86-dev-1"))
    assert "80.0 %" in row and "85.0 %" in row and "2.50 s" in row and "2000" in row
    assert "90.0 %" in table
    assert "view: none" in table


def test_print_table_names_the_view_the_devices_apply(tmp_path: Path) -> None:
    # Prepare
    plans = plan_agents("x86-dev:1", tmp_path)
    results = {"x86-dev-1": {"probe_accuracy": 0.8, "finished_at": 12.5, "bytes_received": 9}}
    report = {
        "task": "digits",
        "num_indices": 30,
        "strategy": "high-energy",
        "teacher": {"encoder": "lite0-64-int8"},
        "teacher_accuracy": 0.9,
        "devices": {},
        "view": {"description": "grayscale() > resize(filter=box, size=8)"},
    }
    # Execute
    table = print_table(plans, results, report, payload_bytes=9, published_at=10.0)
    # Assert
    assert "view: grayscale() > resize(filter=box, size=8)" in table


@pytest.mark.parametrize("kind", ["mosquitto", "amqtt"])
def test_demo_agent_configs_pass_the_agent_checks(tmp_path: Path, kind: str) -> None:
    # Prepare: every default demo device, against a secure and an anonymous broker
    plans = plan_agents("raspberry-pi-4:2,x86-dev:1", tmp_path / "out")
    broker = Broker(kind=kind, folder=tmp_path, port=1883)
    for plan in plans:
        broker.passwords[plan.device_id] = f"pw-{plan.device_id}"
    args = argparse.Namespace(data=tmp_path / "data", out=tmp_path / "out", task="fashion")
    # Execute
    configs = [
        parse_config(tomllib.loads(_toml(agent_table(p, args, broker, tmp_path / "k.pem"))))
        for p in plans
    ]
    # Assert
    assert [c.device_id for c in configs] == ["rpi-4-1", "rpi-4-2", "x86-dev-1"]
    assert all((c.mqtt.username is not None) == (kind == "mosquitto") for c in configs)


def test_two_demo_tasks_share_one_probe_folder(tmp_path: Path) -> None:
    # Prepare: two targets with distinct class folders
    for task, classes in (("fashion", ("bag", "coat")), ("digits", ("0", "1"))):
        for name in classes:
            (tmp_path / "data" / "targets" / task / "test" / name).mkdir(parents=True)
    args = argparse.Namespace(
        data=tmp_path / "data", out=tmp_path / "out", task="fashion", second_task="digits"
    )
    # Execute
    link_probe_dir(args)
    # Assert
    assert demo_tasks(args) == ["fashion", "digits"]
    assert sorted(p.name for p in probe_dir(args).iterdir()) == ["0", "1", "bag", "coat"]
    one = argparse.Namespace(data=tmp_path / "data", out=tmp_path / "out", task="fashion")
    assert probe_dir(one) == tmp_path / "data" / "targets" / "fashion" / "test"
