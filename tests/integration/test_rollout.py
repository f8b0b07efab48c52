"""Staged rollouts against a real Mosquitto (issue 19, item 5): a promoted one and an aborted one
with real agent daemons (the tiny device: real corpus, ONNX encoder, training and probe
accuracy), a canary that never answers, and a forged revocation refused.

The daemons run as separate processes (`python -m agent run`), report their group in status and
announce Home Assistant entities; the record's "what Home Assistant shows" comes from the
entities' retained discovery configs and state topics on the broker.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config import AgentConfig
from agent.models import ModelStore
from agent.profiles import dump_toml
from builder.cli import main as build_main
from builder.errors import PublishRefusedError
from builder.fleet.publish import publish_payload
from builder.fleet.revoke import retained_payload, revoke_version
from builder.fleet.rollout import run_rollout
from builder.fleet.rollout_policy import Threshold
from builder.fleet.rollout_record import RolloutRecord
from builder.fleet.session import BrokerSession
from plada.payload import payload_digest
from plada.revocation import encode_revocation, make_revocation
from plada.signing import load_trusted_keys
from plada.topics import TopicKind, TopicScheme
from tests.support.mqtt_probe import admin_probe
from tests.support.spawn import spawn_python
from tools.devbroker import ADMIN_USER, Broker
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
from tools.tiny.corpus import TINY_CLASSES, make_tiny_imagefolder
from tools.tiny.device import TinyDevice, make_device

pytestmark = pytest.mark.broker
TOPICS = TopicScheme()
# The tiny device (random 24-feature encoder, 80 images) is a weak classifier: on its probe set
# (10 images per class) a head taught the true classes scores 0.5-0.6, one taught labels shifted
# by one class 0.2-0.3 (measured). The threshold sits between.
THRESHOLD = Threshold(min_accuracy=0.35, min_fraction=0.6)
SIMULATED = {"tiny": 0.6}  # required: max(0.35, 0.6 x 0.6) = 0.36
REQUIRED = 0.36


@dataclass
class Fleet:
    tiny: TinyDevice
    broker: Broker
    root: Path
    probe_dir: Path
    procs: dict[str, subprocess.Popen[bytes]]
    configs: dict[str, AgentConfig]

    def start(self, device_id: str, group: str) -> None:
        """A daemon for a device already registered with broker.add_users."""
        config = device_config(
            self.tiny.config,
            self.broker,
            device_id,
            self.root,
            group=group,
            home_assistant=True,
            probe_dir=str(self.probe_dir),
        )
        path = self.root / f"{device_id}.toml"
        path.write_text(dump_toml(config.model_dump(mode="json", exclude_none=True)), "utf-8")
        self.configs[device_id] = config
        self.procs[device_id] = spawn_python(
            ["-m", "agent", "run", "--config", str(path)], self.root / f"{device_id}.log"
        )

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()

    def store(self, device_id: str) -> ModelStore:
        return ModelStore(self.configs[device_id].state.dir)

    def log(self, device_id: str) -> str:
        return (self.root / f"{device_id}.log").read_text(encoding="utf-8")[-3000:]


@pytest.fixture
def fleet(broker: Broker, tmp_path: Path) -> Iterator[Fleet]:
    tiny = make_device(tmp_path / "tiny")
    probe_dir = make_tiny_imagefolder(tmp_path / "probe", train_per_class=1) / "test"
    running = Fleet(tiny, broker, tmp_path, probe_dir, {}, {})
    try:
        yield running
    finally:
        running.stop()


def _wait_online(broker: Broker, ids: list[str]) -> None:
    probe = admin_probe(broker, "plada/device/+/status")
    try:
        # A status naming the group: the rollout finds the devices by it.
        wait_until(
            lambda: all(probe.last(TOPICS.status(d)) is not None for d in ids),
            timeout_s=60,
            what=f"{ids} to report status",
        )
    finally:
        probe.close()


def _bad(tiny: TinyDevice, version: int) -> bytes:
    """A payload taught the wrong classes (each label shifted by one): what a broken build or a
    mismatched corpus does to a device."""
    return tiny.payload(version=version, labels=(tiny.labels + 1) % len(TINY_CLASSES))


def _retained_payload(broker: Broker, group: str) -> dict[TopicKind, bytes]:
    with BrokerSession(admin_options(broker)) as session:
        retained = session.collect_retained(TOPICS.task_filter(group, "shapes"), quiet_s=0.3)
    out = {}
    for topic, body in retained.items():
        parsed = TOPICS.parse(topic)
        if body and parsed is not None:
            out[parsed.kind] = body
    return out


def test_promoted_rollout_canary_clears_threshold_rest_gets_the_task(fleet: Fleet) -> None:
    # Prepare: two canary devices, two in the field, nothing installed
    canary, rest = ["can-1", "can-2"], ["fld-1", "fld-2"]
    fleet.broker.add_users([*canary, *rest])
    for device_id in canary:
        fleet.start(device_id, "canary")
    for device_id in rest:
        fleet.start(device_id, "field")
    _wait_online(fleet.broker, [*canary, *rest])
    good = fleet.tiny.payload(version=1)
    phases: list[tuple[str, int, int]] = []
    # Execute
    record = run_rollout(
        good,
        options=admin_options(fleet.broker),
        canary=["canary"],
        rest=["field"],
        signing_key=fleet.tiny.signing_key,
        threshold=THRESHOLD,
        simulated=SIMULATED,
        timeout_s=120,
        trusted_keys=load_trusted_keys([fleet.tiny.public_key]),
        progress=lambda phase, done, total: phases.append((phase, done, total)),
    )
    # Assert
    assert record.outcome == "promoted", (record.reason, fleet.log("can-1"))
    record = RolloutRecord.parse(record.model_dump(mode="json"))  # what the trial report reads
    by_id = {d.device_id: d for d in record.devices}
    assert sorted(by_id) == sorted([*canary, *rest])
    for device_id in canary + rest:
        d = by_id[device_id]
        assert d.verdict == "pass" and d.installed_version == 1, d
        assert d.reported_accuracy is not None and d.reported_accuracy >= REQUIRED
        assert d.required_accuracy == pytest.approx(REQUIRED) and d.device_class == "tiny"
        assert d.published_at is not None and d.answered_at is not None
        assert d.answered_at >= d.published_at
        ha = d.home_assistant
        assert ha is not None and ha.present and ha.available
        assert (ha.installed_version, ha.latest_version, ha.state) == (
            "shapes@1",
            "shapes@1",
            "off",
        )
        assert ha.release_summary == "v1 installed"
    assert {d.role for d in record.devices if d.group == "canary"} == {"canary"}
    # The rest was published only after the canary's decision.
    assert min(by_id[d].published_at or 0 for d in rest) >= record.decided_at
    assert ("canary results", 2, 2) in phases and ("rest results", 2, 2) in phases
    assert record.revocation_id is None and record.revoked == []


def test_aborted_rollout_revokes_canary_rolls_back_rest_never_gets_it(fleet: Fleet) -> None:
    # Prepare: v1 installed everywhere, then a broken v2 staged
    canary, rest = ["can-1", "can-2"], ["fld-1"]
    fleet.broker.add_users([*canary, *rest, "late-1"])
    for device_id in canary:
        fleet.start(device_id, "canary")
    fleet.start("fld-1", "field")
    _wait_online(fleet.broker, [*canary, *rest])
    v1, v2 = fleet.tiny.payload(version=1), _bad(fleet.tiny, version=2)
    admin = admin_options(fleet.broker)
    for group in ("canary", "field"):
        publish_payload(v1, options=admin, group=group, check=True)
    for device_id in canary + rest:
        wait_until(
            lambda d=device_id: bool(fleet.store(d).installed()),  # type: ignore[misc]
            timeout_s=90,
            what=f"v1 on {device_id}",
        )
    # Execute
    record = run_rollout(
        v2,
        options=admin,
        canary=["canary"],
        rest=["field"],
        signing_key=fleet.tiny.signing_key,
        threshold=THRESHOLD,
        simulated=SIMULATED,
        timeout_s=120,
        trusted_keys=load_trusted_keys([fleet.tiny.public_key]),
    )
    # A canary device joining after the abort.
    fleet.start("late-1", "canary")
    wait_until(
        lambda: bool(fleet.store("late-1").installed()), timeout_s=90, what="the late device"
    )
    retained = _retained_payload(fleet.broker, "canary")
    # Assert: the decision and the canary's rollback
    assert record.outcome == "aborted", record.reason
    by_id = {d.device_id: d for d in record.devices}
    # The first canary result below the threshold decides; the other canary device is judged
    # too if it answers before its rollback.
    assert {by_id[d].verdict for d in canary} <= {"below", "not_judged"}
    assert "below" in {by_id[d].verdict for d in canary}
    for device_id in canary:
        d = by_id[device_id]
        if d.verdict == "below":
            assert d.reported_version == 2 and d.rolled_back_at is not None
            assert d.reported_accuracy is not None and d.reported_accuracy < REQUIRED
            assert d.rolled_back_at >= record.decided_at
        assert d.installed_version == 1
        assert [(m.version) for m in fleet.store(device_id).installed()] == [1]
        rec = fleet.store(device_id).task_record("shapes")
        assert rec is not None and rec.rolled_back[-1].payload_digest == payload_digest(v2)
        ha = d.home_assistant
        assert ha is not None and ha.present
        assert (ha.installed_version, ha.latest_version, ha.state) == (
            "shapes@1",
            "shapes@1",
            "off",
        )
        assert ha.release_summary is not None
        assert ha.release_summary.startswith("v1 installed; v2 revoked by the builder at ")
    # The rest never received v2.
    field = by_id["fld-1"]
    assert field.verdict is None and field.published_at is None and field.installed_version == 1
    assert fleet.store("fld-1").task_record("shapes").highest_version == 1  # type: ignore[union-attr]
    assert (
        field.home_assistant is not None and field.home_assistant.release_summary == "v1 installed"
    )
    # The canary group retains the revocation and v1 again, not v2: the late device got v1 only.
    assert record.revocation_id is not None and len(record.revoked) == 1
    assert retained.get(TopicKind.TASK) == v1 and TopicKind.REVOKED in retained
    late = fleet.store("late-1")
    assert [m.version for m in late.installed()] == [1]
    assert late.task_record("shapes").highest_version == 1  # type: ignore[union-attr]
    with pytest.raises(PublishRefusedError, match="revoked in this group"):
        publish_payload(v2, options=admin, group="canary", check=True)


@pytest.mark.parametrize(("on_timeout", "outcome"), [("abort", "aborted"), ("ignore", "promoted")])
def test_a_canary_device_that_never_answers_times_out(
    broker: Broker, tmp_path: Path, on_timeout: str, outcome: str
) -> None:
    # Prepare: one answering canary agent (in-process, instant training) and one listed device
    # that is never switched on
    keys = make_keys(tmp_path / "keys")
    broker.add_user("can-1")
    config = make_config(
        tmp_path, device_id="can-1", public_key=keys.public_path,
        mqtt=mqtt_section(broker, "can-1", group="canary"),
    )  # fmt: skip
    agent = start_agent(config, FakeApplier([keys.public_path], probe=(0.9, 10)))
    _wait_online(broker, ["can-1"])
    # Execute
    try:
        record = run_rollout(
            make_payload_bytes(keys),
            options=admin_options(broker),
            canary=["canary"],
            rest=[],
            signing_key=keys.private,
            threshold=Threshold(min_accuracy=0.5),
            timeout_s=4,
            on_timeout=on_timeout,  # type: ignore[arg-type]
            devices={"canary": ["ghost"]},
        )
    finally:
        agent.stop()
    # Assert
    assert record.outcome == outcome
    assert record.device("ghost").verdict == "no_answer"
    assert record.device("ghost").answered_at is None
    assert record.device("can-1").verdict == "pass"
    assert record.decided_at - record.started_at >= 4  # it waited the whole timeout


@pytest.mark.parametrize(
    ("accuracy", "code", "outcome"), [(0.9, 0, "promoted"), (0.2, 3, "aborted")]
)
def test_rollout_cli_writes_the_record_and_shows_it(
    broker: Broker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    accuracy: float,
    code: int,
    outcome: str,
) -> None:
    # Prepare: one canary agent reporting `accuracy`, one field agent
    keys = make_keys(tmp_path / "keys")
    broker.add_users(["can-1", "fld-1"])
    agents = [
        start_agent(
            make_config(
                tmp_path,
                device_id=device_id,
                public_key=keys.public_path,
                mqtt=mqtt_section(broker, device_id, group=group, home_assistant=True),
            ),
            FakeApplier([keys.public_path], probe=(accuracy, 10)),
        )
        for device_id, group in (("can-1", "canary"), ("fld-1", "field"))
    ]
    _wait_online(broker, ["can-1", "fld-1"])
    payload = tmp_path / "shapes.plada"
    payload.write_bytes(make_payload_bytes(keys))
    record_path = tmp_path / "rollout.json"
    auth = (
        ["--username", ADMIN_USER, "--password-file", str(broker.password_file(ADMIN_USER))]
        if broker.secure
        else ["--mqtt3"]
    )
    # Execute
    try:
        ran = build_main(
            [
                "rollout", str(payload), "--canary", "canary", "--rest", "field",
                "--signing-key", str(keys.public_path.with_name("private.pem")),
                "--trusted-key", str(keys.public_path), "--min-accuracy", "0.5",
                "--device-timeout", "60", "--record", str(record_path), "--no-progress",
                "--broker", broker.url, *auth,
            ]
        )  # fmt: skip
    finally:
        for agent in agents:
            agent.stop()
    printed = capsys.readouterr().out
    shown = build_main(["rollout", "--show", str(record_path)])
    again = capsys.readouterr().out
    # Assert
    assert ran == code
    record = RolloutRecord.load(record_path)
    assert record.outcome == outcome
    assert f"Rollout of shapes v1: {outcome}" in printed and "What Home Assistant shows" in printed
    assert shown == 0 and again == printed
    field = record.device("fld-1")
    assert (field.installed_version == 1) is (outcome == "promoted")


def test_revocation_clears_the_revoked_copy_and_restores_only_the_previous_payload(
    broker: Broker, tmp_path: Path
) -> None:
    # Prepare: group a held v1 (one message) before v2 (chunked) was published; group b's
    # snapshot was taken after v2 was already there (a rollout run again after a crash)
    keys = make_keys(tmp_path / "keys")
    admin = admin_options(broker)
    v1 = make_payload_bytes(keys, version=1)
    v2 = make_payload_bytes(keys, version=2, k=3000, size=100_000)
    publish_payload(v1, options=admin, group="a")
    before = {"a": retained_payload(admin, group="a", task="shapes")}
    for group in ("a", "b"):
        publish_payload(v2, options=admin, group=group, max_chunk_bytes=1024)
    before["b"] = retained_payload(admin, group="b", task="shapes")
    revocation = encode_revocation(
        make_revocation("shapes", 2, payload_digest(v2)), signing_key=keys.private
    )
    # Execute
    reports = {
        g: revoke_version(revocation, options=admin, group=g, restore=before[g]) for g in "ab"
    }
    # Assert
    for group in "ab":
        assert any("/chunk/" in t for t in reports[group].cleared + reports[group].restored)
    assert _retained_payload(broker, "a") == {
        TopicKind.TASK: v1,
        TopicKind.REVOKED: revocation,
    }
    assert _retained_payload(broker, "b") == {TopicKind.REVOKED: revocation}
    assert reports["b"].restored == []


def test_forged_revocation_is_refused_by_builder_and_device(broker: Broker, tmp_path: Path) -> None:
    # Prepare: an agent serving shapes v1
    keys = make_keys(tmp_path / "keys")
    forger = make_keys(tmp_path / "forger")
    broker.add_user("can-1")
    config = make_config(
        tmp_path, device_id="can-1", public_key=keys.public_path,
        mqtt=mqtt_section(broker, "can-1", group="canary"),
    )  # fmt: skip
    agent = start_agent(config, FakeApplier([keys.public_path]))
    v1 = make_payload_bytes(keys)
    publish_payload(v1, options=admin_options(broker), group="canary")
    wait_until(lambda: agent.app.status.task == "shapes", what="v1")
    forged = encode_revocation(
        make_revocation("shapes", 1, payload_digest(v1)), signing_key=forger.private
    )
    # Execute: through the builder (refused before sending), then straight on the topic
    with pytest.raises(PublishRefusedError, match="unknown-key"):
        revoke_version(
            forged,
            options=admin_options(broker),
            group="canary",
            trusted_keys=load_trusted_keys([keys.public_path]),
        )
    with BrokerSession(admin_options(broker)) as session:
        session.wait_acked([session.publish(TOPICS.task_revoked("canary", "shapes"), forged)])

    def refused() -> bool:
        error = agent.app.status.last_error
        return error is not None and error.payload_id == payload_digest(forged)

    wait_until(refused, what="the forged revocation refused")
    error = agent.app.status.last_error
    agent.stop()
    # Assert
    assert error is not None and (error.code, error.fault) == ("PayloadSignatureError", "payload")
    assert [m.version for m in ModelStore(config.state.dir).installed()] == [1]
    assert _retained_payload(broker, "canary").get(TopicKind.TASK) == v1  # nothing cleared
