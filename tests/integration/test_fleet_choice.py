"""`plada-build task --fleet-status mqtt://...` (issue 16, item 2): the device classes and their
counts come from the retained statuses of a live fleet on a real broker, and --auto chooses for
all of them (weighted by the counts); a class the builder does not know is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import builder.features.sources
from builder.cli import main
from plada.signing import generate_keypair
from plada.topics import TopicScheme
from tests.support.broker import require_secure
from tests.support.mqtt_probe import admin_probe
from tests.unit.builder.test_task_cli import _PixelFeatures
from tools.devbroker import ADMIN_USER, Broker
from tools.tiny.corpus import make_tiny_corpus, make_tiny_imagefolder

pytestmark = pytest.mark.broker


def _retain_statuses(broker: Broker, classes: dict[str, str]) -> None:
    """Device id -> class, each as its agent would leave it: retained status and availability."""
    topics = TopicScheme()
    probe = admin_probe(broker, topics.all_status_filter())
    try:
        for device_id, device_class in classes.items():
            status = {"device_id": device_id, "device_class": device_class, "state": "idle"}
            probe.publish(topics.status(device_id), json.dumps(status).encode())
            probe.publish(topics.availability(device_id), b"online")
        # retained messages are delivered to the subscription: every status is on the broker
        assert probe.wait_for(
            lambda: all(probe.last(topics.status(d)) for d in classes), timeout_s=30
        )
    finally:
        probe.close()


def _argv(root: Path, url: str) -> list[str]:
    return [
        "task", "--corpus", str(root / "corpus"), "--target", str(root / "target"),
        "--key", str(root / "keys" / "private.pem"), "--out", str(root / "out" / "t.plada"),
        "--report", str(root / "out" / "report"), "--teacher-encoder", "lite1-96",
        "--budget", "10%", "--auto", "--views", "off", "--no-progress",
        "--fleet-status", url,
    ]  # fmt: skip


def test_fleet_status_from_a_live_broker_weights_the_classes(
    broker: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare: three Pi 4 and one x86 dev box, as their agents leave their status retained
    require_secure(broker)
    make_tiny_corpus(tmp_path / "corpus", num_images=240)
    make_tiny_imagefolder(tmp_path / "target", train_per_class=8, test_per_class=6)
    generate_keypair(tmp_path / "keys")
    monkeypatch.setattr(builder.features.sources, "EncoderFeatures", _PixelFeatures)
    monkeypatch.setenv("PLADA_MQTT_USERNAME", ADMIN_USER)
    monkeypatch.setenv("PLADA_MQTT_PASSWORD", broker.passwords[ADMIN_USER])
    _retain_statuses(
        broker, {"pi-a": "raspberry-pi-4", "pi-b": "raspberry-pi-4", "pi-c": "raspberry-pi-4",
                 "dev-1": "x86-dev"},
    )  # fmt: skip
    # Execute
    code = main(_argv(tmp_path, broker.url))
    # Assert
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report" / "report.json").read_text("utf-8"))
    fleet = report["fleet"]
    assert fleet["source"] == broker.url and fleet["objective"] == "weighted"
    assert fleet["fleet_counts"] == {"raspberry-pi-4": 3, "x86-dev": 1}
    assert {n: c["weight"] for n, c in fleet["classes"].items()} == {
        "lite0-64-int8": 3.0,
        "lite1-96": 1.0,
    }
    assert report["default_device"] == "lite0-64-int8"
    assert fleet["worst_class"] in fleet["classes"]
    assert "## Device classes" in (tmp_path / "out" / "report" / "report.md").read_text("utf-8")
    capsys.readouterr()
    assert main(["report", str(tmp_path / "out" / "report")]) == 0
    assert "weighted mean of the classes' ratios" in capsys.readouterr().out


def test_fleet_status_names_classes_the_builder_does_not_know(
    broker: Broker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Prepare
    require_secure(broker)
    make_tiny_corpus(tmp_path / "corpus", num_images=60)
    make_tiny_imagefolder(tmp_path / "target", train_per_class=4, test_per_class=2)
    generate_keypair(tmp_path / "keys")
    monkeypatch.setenv("PLADA_MQTT_USERNAME", ADMIN_USER)
    monkeypatch.setenv("PLADA_MQTT_PASSWORD", broker.passwords[ADMIN_USER])
    _retain_statuses(broker, {"pi-a": "raspberry-pi-4", "t-1": "toaster-9000"})
    # Execute
    code = main(_argv(tmp_path, broker.url))
    # Assert
    assert code == 1
    assert "device classes unknown to the builder: toaster-9000" in capsys.readouterr().err
