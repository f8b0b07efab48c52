"""Passwords, the shipped ACL and TLS on a real mosquitto."""

from __future__ import annotations

import ssl
import time
from pathlib import Path

import pytest

from agent.app import AgentApp
from builder.errors import PublishError
from builder.fleet.publish import publish_payload
from builder.fleet.session import BrokerOptions, BrokerSession
from tests.support.broker import require_secure
from tests.support.mqtt_probe import Probe
from tools.devbroker import Broker
from tools.fleet_harness import (
    FakeApplier,
    admin_options,
    make_config,
    make_keys,
    make_payload_bytes,
    mqtt_section,
    start_agent,
    wait_until,
)

pytestmark = pytest.mark.broker


def test_broker_refuses_wrong_password(broker: Broker) -> None:
    # Prepare
    require_secure(broker)
    broker.add_user("dev-a")
    probe = Probe(broker.url, username="dev-a", password="not-the-password")
    # Execute
    result = probe.connect()
    probe.close()
    # Assert
    assert result.is_failure


@pytest.mark.parametrize("protocol5", [True, False], ids=["mqtt5", "mqtt311"])
def test_acl_device_cannot_publish_a_task(broker: Broker, protocol5: bool) -> None:
    # Prepare
    require_secure(broker)
    broker.add_user("dev-a")
    device = BrokerOptions(
        url=broker.url, username="dev-a", password=broker.passwords["dev-a"], protocol5=protocol5
    )
    # Execute: MQTT 5 answers "Not authorized"; 3.1.1 acks and silently drops the message
    with BrokerSession(device) as session:
        mid = session.publish("plada/group/lab/task", b"forged task")
        if protocol5:
            with pytest.raises(PublishError, match="refused"):
                session.wait_acked([mid])
        else:
            session.wait_acked([mid])
    with BrokerSession(admin_options(broker)) as admin:
        retained = admin.collect_retained("plada/group/#", quiet_s=0.3)
    # Assert
    assert retained == {}


def test_acl_device_reads_only_its_own_status(broker: Broker) -> None:
    # Prepare: both devices publish a retained status on their own topic (allowed).
    require_secure(broker)
    broker.add_users(["dev-a", "dev-b"])
    for name in ("dev-a", "dev-b"):
        options = BrokerOptions(url=broker.url, username=name, password=broker.passwords[name])
        with BrokerSession(options) as session:
            session.wait_acked([session.publish(f"plada/device/{name}/status", name.encode())])
    spy = Probe(broker.url, username="dev-a", password=broker.passwords["dev-a"])
    spy.connect()
    # Execute
    spy.subscribe("plada/device/+/status")
    spy.subscribe("plada/device/dev-b/status")
    spy.wait_for(lambda: spy.last("plada/device/dev-a/status") is not None)
    time.sleep(0.5)
    spy.close()
    # Assert: its own status arrives (the control), the other device's never does
    assert spy.last("plada/device/dev-a/status") == b"dev-a"
    assert spy.last("plada/device/dev-b/status") is None


def test_tls_delivery_with_ca_and_client_certificate(broker: Broker, tmp_path: Path) -> None:
    # Prepare
    require_secure(broker)
    assert broker.tls is not None
    keys = make_keys(tmp_path / "keys")
    broker.add_user("dev-tls")
    config = make_config(
        tmp_path,
        device_id="dev-tls",
        public_key=keys.public_path,
        mqtt=mqtt_section(broker, "dev-tls", tls=True),
    )
    applier = FakeApplier([keys.public_path])
    agent = start_agent(config, applier)
    data = make_payload_bytes(keys)
    options = BrokerOptions(
        url=broker.tls_url,
        username="builder",
        password=broker.passwords["builder"],
        ca_file=broker.tls.ca,
        cert_file=broker.tls.client_cert,
        key_file=broker.tls.client_key,
    )
    # Execute
    publish_payload(data, options=options, group="lab")
    wait_until(lambda: bool(applier.applied), what="the TLS agent to apply the task")
    agent.stop()
    # Assert
    assert isinstance(agent.app, AgentApp)
    assert applier.applied == [make_payload_digest(data)]


# paho leaves the half-open SSL socket of a failed handshake for the garbage collector.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_tls_refuses_a_broker_it_cannot_verify(broker: Broker) -> None:
    # Prepare: the system CA store does not know the test CA.
    require_secure(broker)
    options = BrokerOptions(
        url=broker.tls_url, username="builder", password=broker.passwords["builder"], timeout_s=5
    )
    # Execute / Assert
    with pytest.raises(PublishError, match="cannot connect"):
        with BrokerSession(options):
            pass
    assert issubclass(ssl.SSLCertVerificationError, ssl.SSLError)


def make_payload_digest(data: bytes) -> str:
    from plada.payload import payload_digest

    return payload_digest(data)
