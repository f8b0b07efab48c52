"""--fleet-status: the fleet's classes and counts from a `fleet status --json` file, mapped to
encoders through the device-class profiles; the fleet flags -> classes and objective."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from builder.commands.fleet_args import fleet_choice
from builder.errors import BuilderError
from builder.fleet.composition import load_profiles, read_composition, read_status_file

PROFILES = Path("firmware_configs")


def _status_file(tmp_path: Path, rows: Sequence[Mapping[str, object]]) -> Path:
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def _args(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "devices": None,
        "fleet_objective": None,
        "fleet_weights": None,
        "fleet_status": None,
        "fleet_base_topic": "plada",
        "profiles": PROFILES,
    }
    values.update(overrides)
    return argparse.Namespace(**values)


def test_profiles_map_the_shipped_classes_to_their_encoders() -> None:
    profiles = load_profiles(PROFILES)
    assert profiles["raspberry-pi-4"] == "lite0-64-int8"
    assert profiles["x86-dev"] == "lite1-96"


def test_status_file_counts_devices_per_class_and_encoder(tmp_path: Path) -> None:
    # Prepare: what `plada-build fleet status --json` prints (extra fields are kept, not needed)
    rows: list[dict[str, object]] = [
        {
            "device_id": "p1",
            "device_class": "raspberry-pi-4",
            "availability": "online",
            "tasks": {},
        },
        {"device_id": "p2", "device_class": "raspberry-pi-4", "availability": "offline"},
        {"device_id": "x1", "device_class": "x86-dev", "availability": "online"},
        {"device_id": "l1", "device_class": "lite1-128", "availability": "online"},
        {"device_id": "ghost", "device_class": None, "availability": "online"},
    ]
    path = _status_file(tmp_path, rows)
    # Execute
    fleet = read_composition(str(path), profiles=load_profiles(PROFILES))
    # Assert
    assert fleet.counts == {"raspberry-pi-4": 2, "lite1-128": 1, "x86-dev": 1}
    assert fleet.encoder_counts() == {"lite0-64-int8": 2, "lite1-128": 1, "lite1-96": 1}
    assert fleet.unclassified == ["ghost"]


def test_status_file_names_the_bad_field(tmp_path: Path) -> None:
    path = _status_file(tmp_path, [{"device_id": "p1"}, {"device_id": "p2", "device_class": 5}])
    with pytest.raises(BuilderError, match=r"device 1 key 'device_class'"):
        read_status_file(path)
    path.write_text('{"device_id": "p1"}', encoding="utf-8")
    with pytest.raises(BuilderError, match="valid list"):
        read_status_file(path)
    path.write_text("[", encoding="utf-8")
    with pytest.raises(BuilderError, match="not JSON"):
        read_status_file(path)


def test_classes_unknown_to_the_builder_are_named(tmp_path: Path) -> None:
    rows = [
        {"device_id": "a", "device_class": "raspberry-pi-4"},
        {"device_id": "b", "device_class": "toaster"},
        {"device_id": "c", "device_class": "fridge"},
    ]
    with pytest.raises(BuilderError, match="unknown to the builder: fridge, toaster"):
        read_composition(str(_status_file(tmp_path, rows)), profiles=load_profiles(PROFILES))


def test_fleet_status_file_makes_counts_the_weights(tmp_path: Path) -> None:
    rows = [
        {"device_id": "p1", "device_class": "raspberry-pi-4"},
        {"device_id": "p2", "device_class": "raspberry-pi-4"},
        {"device_id": "x1", "device_class": "x86-dev"},
    ]
    path = str(_status_file(tmp_path, rows))
    choice = fleet_choice(_args(fleet_status=path))
    assert choice.devices == ["lite0-64-int8", "lite1-96"]
    assert choice.objective.kind == "weighted"
    assert dict(choice.objective.weights) == {"lite0-64-int8": 2.0, "lite1-96": 1.0}
    assert choice.counts == {"raspberry-pi-4": 2, "x86-dev": 1}
    assert fleet_choice(_args(fleet_status=path, fleet_objective="worst")).objective.kind == "worst"
    with pytest.raises(BuilderError, match="drop --devices"):
        fleet_choice(_args(fleet_status=path, devices="lite1-96"))


def test_fleet_weights_name_classes_or_encoders() -> None:
    choice = fleet_choice(_args(fleet_weights="raspberry-pi-4=8,lite1-96=2,x86-dev=1"))
    assert choice.devices == ["lite0-64-int8", "lite1-96"]
    assert dict(choice.objective.weights) == {"lite0-64-int8": 8.0, "lite1-96": 3.0}
    with pytest.raises(BuilderError, match="unknown to the builder: toaster"):
        fleet_choice(_args(fleet_weights="toaster=1"))
    with pytest.raises(BuilderError, match="not worst"):
        fleet_choice(_args(fleet_weights="lite1-96=1", fleet_objective="worst"))


def test_devices_alone_choose_for_the_worst_class() -> None:
    choice = fleet_choice(_args(devices="lite0-64-int8,x86-dev"))
    assert choice.devices == ["lite0-64-int8", "lite1-96"]
    assert choice.objective.kind == "worst"
    assert fleet_choice(_args()).devices == ["lite0-64-int8"]
    alone = fleet_choice(_args(devices="lite0-64-int8,lite1-96", fleet_objective="default"))
    assert alone.devices == ["lite0-64-int8", "lite1-96"] and alone.objective.kind == "default"
    with pytest.raises(BuilderError, match="needs --fleet-weights"):
        fleet_choice(_args(fleet_objective="weighted"))
