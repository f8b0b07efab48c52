"""Publish once, every agent gets it: chunks, 50 agents, a broker restart, duplicates, rejections.

Delivery-logic tests use the fake applier (real payloads and signatures, instant training); the
rejection test runs the real agent pipeline on the tiny corpus and encoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.app import PipelineApplier, subscription_record
from agent.models import ModelStore
from builder.cli import main as build_main
from builder.fleet.publish import publish_payload
from builder.fleet.session import BrokerSession
from builder.fleet.status import fleet_results, fleet_status
from plada.chunks import split_payload
from plada.payload import payload_digest
from tools.devbroker import Broker
from tools.fleet_harness import (
    FakeApplier,
    admin_options,
    device_config,
    make_config,
    make_keys,
    make_payload_bytes,
    mqtt_section,
    start_agent,
    wait_until,
)
from tools.tiny.device import make_device

pytestmark = pytest.mark.broker

BIG = 100_000  # corpus size for payloads large enough to chunk


def test_chunked_payload_reaches_agent_and_results_come_back(
    broker: Broker, tmp_path: Path
) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    broker.add_user("dev-1")
    config = make_config(tmp_path, public_key=keys.public_path, mqtt=mqtt_section(broker, "dev-1"))
    applier = FakeApplier([keys.public_path], size=BIG, probe=(0.75, 4))
    agent = start_agent(config, applier)
    data = make_payload_bytes(keys, k=3000, size=BIG)
    # Execute
    report = publish_payload(data, options=admin_options(broker), group="lab", max_chunk_bytes=1024)
    wait_until(lambda: bool(applier.applied), what="the chunked task")
    results = fleet_results(admin_options(broker), "shapes")
    agent.stop()
    # Assert
    assert report.chunked and report.messages >= 4
    assert applier.applied == [payload_digest(data)]
    assert len(results) == 1
    assert results[0]["probe_accuracy"] == 0.75
    assert results[0]["bytes_received"] == report.bytes_sent
    assert results[0]["messages"] == report.messages


def test_fifty_agents_one_publish_nothing_lost(broker: Broker, tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    ids = [f"dev-{i:02d}" for i in range(50)]
    broker.add_users(ids)
    appliers = [FakeApplier([keys.public_path]) for _ in ids]
    agents = [
        start_agent(
            make_config(
                tmp_path, device_id=d, public_key=keys.public_path, mqtt=mqtt_section(broker, d)
            ),
            applier,
        )
        for d, applier in zip(ids, appliers, strict=True)
    ]
    wait_until(
        lambda: all(a.app.link.connected.is_set() for a in agents),  # type: ignore[attr-defined]
        what="50 agents to connect",
    )
    data = make_payload_bytes(keys, version=3)
    # Execute
    publish_payload(data, options=admin_options(broker), group="lab")
    wait_until(lambda: all(a.applied for a in appliers), timeout_s=60, what="50 agents")
    wait_until(
        lambda: len(fleet_results(admin_options(broker), "shapes")) == 50,
        timeout_s=30,
        what="50 results",
    )
    devices = fleet_status(admin_options(broker))
    for agent in agents:
        agent.stop()
    # Assert
    assert [a.applied for a in appliers] == [[payload_digest(data)]] * 50
    assert sorted(d.device_id for d in devices) == ids
    assert {(d.to_dict()["state"], d.to_dict()["version"]) for d in devices} == {("ready", 3)}


def test_broker_restart_mid_delivery_resumes_chunks(broker: Broker, tmp_path: Path) -> None:
    # Prepare: the first half of the chunks goes out, then the broker restarts.
    keys = make_keys(tmp_path / "keys")
    broker.add_user("dev-1")
    config = make_config(tmp_path, public_key=keys.public_path, mqtt=mqtt_section(broker, "dev-1"))
    applier = FakeApplier([keys.public_path], size=BIG)
    agent = start_agent(config, applier)
    data = make_payload_bytes(keys, k=3000, size=BIG)
    chunked = split_payload(data, max_chunk_bytes=1024)
    half = len(chunked.chunks) // 2
    chunk_dir = config.state.dir / "fleet" / "chunks" / payload_digest(data)
    with BrokerSession(admin_options(broker)) as admin:
        mids = [admin.publish("plada/group/lab/task/manifest", chunked.manifest)]
        mids += [
            admin.publish(f"plada/group/lab/task/chunk/{i}", chunked.chunks[i]) for i in range(half)
        ]
        admin.wait_acked(mids)
    wait_until(lambda: len(list(chunk_dir.glob("c-*.bin"))) == half, what="half the chunks")
    # Execute
    broker.restart(down_s=1.0)
    with BrokerSession(admin_options(broker)) as admin:
        admin.wait_acked(
            [
                admin.publish(f"plada/group/lab/task/chunk/{i}", chunked.chunks[i])
                for i in range(half, len(chunked.chunks))
            ]
        )
    wait_until(lambda: bool(applier.applied), timeout_s=30, what="the task after the restart")
    agent.stop()
    # Assert
    assert applier.applied == [payload_digest(data)]
    assert not chunk_dir.exists()


def test_duplicate_delivery_and_restart_train_once(broker: Broker, tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    broker.add_user("dev-1")
    config = make_config(tmp_path, public_key=keys.public_path, mqtt=mqtt_section(broker, "dev-1"))
    applier = FakeApplier([keys.public_path])
    data = make_payload_bytes(keys)
    agent = start_agent(config, applier)
    # Execute: the same payload published twice; the agent restarts with its broker session and
    # subscription record (nothing is sent again), then without the record, as after an upgrade
    # from an agent that kept none: it subscribes again and the retained task is delivered again
    publish_payload(data, options=admin_options(broker), group="lab")
    publish_payload(data, options=admin_options(broker), group="lab")
    wait_until(lambda: bool(applier.applied), what="the task")
    wait_until(lambda: agent.app.triallog.totals()["messages"] >= 2, what="the duplicate")
    agent.stop()
    again = start_agent(config, applier)

    def connects() -> int:
        return sum(e.code == "connected" for e in again.app.triallog.events("link"))

    wait_until(lambda: connects() >= 2, what="the reconnect")
    again.stop()
    subscription_record(config).unlink()
    third = start_agent(config, applier)
    wait_until(lambda: third.app.triallog.totals()["messages"] >= 3, what="the redelivery")
    third.stop()
    # Assert: trained once; one redelivery, from the restart that had no record
    assert applier.applied == [payload_digest(data)]
    assert third.app.triallog.totals()["messages"] == 3


def test_bad_payloads_rejected_and_reported_with_real_pipeline(
    broker: Broker, tmp_path: Path
) -> None:
    # Prepare: a real tiny device (corpus, ONNX encoder, pipeline) on the broker.
    tiny = make_device(tmp_path / "tiny", num_images=60, epochs=5)
    broker.add_user("dev-real")
    config = device_config(tiny.config, broker, "dev-real", tmp_path)
    agent = start_agent(config, PipelineApplier(config))
    other_keys = make_keys(tmp_path / "other-keys")
    good = tiny.payload(version=2)
    tampered = bytearray(good)
    tampered[len(tampered) // 2] ^= 0x01
    bad = {
        "tampered": bytes(tampered),
        "unsigned": tiny.payload(version=3, signed=False),
        "unknown key": tiny.payload(version=3, signing_key=other_keys.private),
        "wrong corpus": tiny.payload(version=3, fingerprint="ee" * 32),
        "older": tiny.payload(version=1),
    }
    admin = admin_options(broker)
    codes: dict[str, str] = {}
    # Execute
    publish_payload(good, options=admin, group="lab")
    wait_until(lambda: agent.app.status.task == "shapes", what="the good task")
    for name, data in bad.items():
        publish_payload(data, options=admin, group="lab")
        digest = payload_digest(data)

        def rejected(digest: str = digest) -> bool:
            error = agent.app.status.last_error
            return error is not None and error.payload_id == digest

        wait_until(rejected, what=f"rejection of {name}")
        assert agent.app.status.last_error is not None
        codes[name] = agent.app.status.last_error.code
    status = {d.device_id: d.to_dict() for d in fleet_status(admin)}["dev-real"]
    newer = tiny.payload(version=4, indices=np.arange(40))
    publish_payload(newer, options=admin, group="lab")
    wait_until(lambda: agent.app.status.version == 4, what="the newer task")
    agent.stop()
    # Assert
    assert codes == {
        "tampered": codes["tampered"],  # signature or decode error, depending on the byte hit
        "unsigned": "PayloadSignatureError",
        "unknown key": "PayloadSignatureError",
        "wrong corpus": "PayloadCorpusError",
        "older": "TaskRejectedError",
    }
    assert codes["tampered"].startswith("Payload")
    assert status["state"] == "error" and status["version"] == 2
    assert status["last_error"]["code"] == "TaskRejectedError"
    current = ModelStore(config.state.dir).current()
    assert current is not None and (current.task, current.version) == ("shapes", 4)


def test_expired_payload_rejected(broker: Broker, tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    broker.add_user("dev-1")
    config = make_config(tmp_path, public_key=keys.public_path, mqtt=mqtt_section(broker, "dev-1"))
    applier = FakeApplier([keys.public_path])
    agent = start_agent(config, applier)
    # Execute
    publish_payload(
        make_payload_bytes(keys, expires_at=1_000), options=admin_options(broker), group="lab"
    )
    wait_until(lambda: agent.app.status.last_error is not None, what="the rejection")
    agent.stop()
    # Assert
    assert agent.app.status.last_error is not None
    assert agent.app.status.last_error.code == "PayloadExpiredError"
    assert applier.applied == []


def test_cli_publish_and_fleet_never_echo_the_password(
    broker: Broker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    payload = tmp_path / "task.plada"
    payload.write_bytes(make_payload_bytes(keys))
    secret = broker.passwords["builder"]
    monkeypatch.setenv("PLADA_MQTT_PASSWORD", secret)
    auth = (
        ["--broker", broker.url, "--username", "builder"]
        if broker.secure
        else ["--broker", broker.url, "--mqtt3"]
    )
    # Execute
    published = build_main(["publish", str(payload), "--group", "lab", "--json", *auth])
    status = build_main(["fleet", "status", "--json", *auth])
    results = build_main(["fleet", "results", "shapes", *auth])
    missing = build_main(["publish", str(tmp_path / "nope.plada"), "--group", "lab", *auth])
    out = capsys.readouterr()
    # Assert
    assert (published, status, results, missing) == (0, 0, 0, 66)
    report = json.loads(out.out.split("\n[")[0])
    assert report["payload_bytes"] == payload.stat().st_size
    assert secret not in out.out + out.err
