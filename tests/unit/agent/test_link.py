"""agent.link against a real broker (mosquitto, started by the test), and the [mqtt] config."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent.errors import ConfigError
from agent.link import Inbound, LinkEvent, MqttLink
from agent.mqtt_config import MqttConfig
from tests.support.mqtt_probe import Probe
from tools.devbroker import ADMIN_USER, Broker, start_broker


@pytest.fixture
def mqtt_broker(tmp_path: Path) -> Iterator[Broker]:
    running = start_broker(tmp_path / "broker")
    yield running
    running.stop()


def _device_config(broker: Broker, device_id: str, **extra: object) -> MqttConfig:
    broker.add_user(device_id)
    fields: dict[str, object] = {"broker": broker.url, "group": "lab", "reconnect_max_s": 2}
    if broker.secure:
        fields |= {"username": device_id, "password_file": broker.password_file(device_id)}
    fields |= extra
    return MqttConfig.model_validate(fields)


def _admin(broker: Broker) -> Probe:
    probe = Probe(broker.url, username=ADMIN_USER, password=broker.passwords[ADMIN_USER])
    probe.connect()
    return probe


def _next_inbound(link: MqttLink, *, timeout_s: float = 10.0) -> Inbound:
    while True:
        item = link.inbox.get(timeout=timeout_s)
        if isinstance(item, Inbound):
            return item


@pytest.mark.broker
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_link_receives_retained_task_and_announces_online(
    mqtt_broker: Broker, protocol: str
) -> None:
    # Prepare
    admin = _admin(mqtt_broker)
    admin.publish("plada/group/lab/task", b"payload-bytes")
    admin.subscribe("plada/device/+/availability")
    link = MqttLink(_device_config(mqtt_broker, "pi-1", protocol=protocol), device_id="pi-1")
    # Execute
    link.start()
    inbound = _next_inbound(link)
    link.ack(inbound)
    online = admin.wait_for(lambda: admin.last("plada/device/pi-1/availability") == b"online")
    link.stop()
    offline = admin.wait_for(lambda: admin.last("plada/device/pi-1/availability") == b"offline")
    admin.close()
    # Assert
    assert (inbound.topic, inbound.payload, inbound.retain) == (
        "plada/group/lab/task",
        b"payload-bytes",
        True,
    )
    assert online and offline


@pytest.mark.broker
def test_link_last_will_marks_crashed_device_offline(mqtt_broker: Broker) -> None:
    # Prepare
    admin = _admin(mqtt_broker)
    admin.subscribe("plada/device/+/availability")
    link = MqttLink(_device_config(mqtt_broker, "pi-2", keepalive_s=5), device_id="pi-2")
    link.start()
    assert admin.wait_for(lambda: admin.last("plada/device/pi-2/availability") == b"online")
    # Execute
    link.kill()
    # Assert
    assert admin.wait_for(
        lambda: admin.last("plada/device/pi-2/availability") == b"offline", timeout_s=15
    )
    admin.close()


@pytest.mark.broker
def test_link_persistent_session_gets_task_published_while_offline(mqtt_broker: Broker) -> None:
    # Prepare: connect once so the broker holds a session with the subscription, then go away.
    config = _device_config(mqtt_broker, "pi-3")
    first = MqttLink(config, device_id="pi-3")
    first.start()
    assert first.connected.wait(10)
    first.stop()
    admin = _admin(mqtt_broker)
    # Execute: a non-retained QoS 1 message reaches only queued sessions.
    admin.publish("plada/group/lab/tasks/shapes/manifest", b"queued", retain=False)
    second = MqttLink(config, device_id="pi-3")
    second.start()
    event = second.inbox.get(timeout=10)
    inbound = _next_inbound(second)
    second.ack(inbound)
    second.stop()
    admin.close()
    # Assert
    assert isinstance(event, LinkEvent) and event.session_present
    assert inbound.payload == b"queued"


@pytest.mark.broker
def test_link_reconnects_after_broker_restart(mqtt_broker: Broker) -> None:
    # Prepare
    link = MqttLink(_device_config(mqtt_broker, "pi-4"), device_id="pi-4")
    link.start()
    assert link.connected.wait(10)
    # Execute
    mqtt_broker.restart(down_s=0.5)
    admin = _admin(mqtt_broker)
    admin.publish("plada/group/lab/task", b"after-restart")
    # Assert
    got: list[bytes] = []
    try:
        while b"after-restart" not in got:
            item = link.inbox.get(timeout=15)
            if isinstance(item, Inbound):
                got.append(item.payload)
                link.ack(item)
    except queue.Empty:
        pytest.fail(f"no task after broker restart; got {got}")
    finally:
        link.stop()
        admin.close()


def test_mqtt_config_names_bad_keys() -> None:
    with pytest.raises(ValidationError, match="broker"):
        MqttConfig.model_validate({"broker": "http://x"})
    with pytest.raises(ValidationError, match="extra"):
        MqttConfig.model_validate({"brokr": "mqtt://x"})
    with pytest.raises(ValidationError, match="username is missing"):
        MqttConfig.model_validate({"password_env": "X"})
    with pytest.raises(ValidationError, match="cert_file and key_file"):
        MqttConfig.model_validate({"cert_file": "/c.pem"})


def test_mqtt_config_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare
    (tmp_path / "pw").write_text("s3cret\n", encoding="utf-8")
    (tmp_path / "mqtt_password").write_text("from-systemd", encoding="utf-8")
    monkeypatch.setenv("PLADA_PW", "from-env")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    # Execute
    by_file = MqttConfig(username="d", password_file=tmp_path / "pw").resolve_password()
    by_env = MqttConfig(username="d", password_env="PLADA_PW").resolve_password()
    by_cred = MqttConfig(username="d", password_credential="mqtt_password").resolve_password()
    # Assert
    assert (by_file, by_env, by_cred) == ("s3cret", "from-env", "from-systemd")
    with pytest.raises(ConfigError, match="password_env"):
        MqttConfig(username="d", password_env="PLADA_MISSING_VAR").resolve_password()
    with pytest.raises(ConfigError, match="password_file"):
        MqttConfig(username="d", password_file=tmp_path / "nope").resolve_password()
