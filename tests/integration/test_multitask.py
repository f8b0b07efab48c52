"""Several tasks per device (issue 17), against a real broker: two tasks installed side by side and
both answering, a late joiner receiving every task of its group, a new version of one task leaving
the other alone, per-task rollback, a signed retirement (and a forged one refused), and a daemon
killed while installing the second task.

Delivery tests use the fake applier (real payloads, signatures, model store and version policy;
instant training); the prediction and crash tests run the real pipeline on the tiny device.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.app import PipelineApplier, subscription_record
from agent.cli import main as agent_main
from agent.config import AgentConfig
from agent.models import ModelStore
from agent.predict import Predictor
from agent.profiles import dump_toml
from agent.triallog import TrialLog
from builder.cli import main as build_main
from builder.errors import PublishRefusedError
from builder.fleet.publish import publish_payload, retire_task
from builder.fleet.session import BrokerSession
from builder.fleet.status import fleet_status
from plada.payload import payload_digest
from plada.signing import load_trusted_keys
from plada.tombstone import encode_tombstone, make_tombstone
from plada.topics import TopicKind, TopicScheme
from tests.support.mqtt_probe import admin_probe
from tests.support.spawn import spawn_python
from tools.devbroker import ADMIN_USER, Broker
from tools.fleet_harness import (
    FakeApplier,
    Keys,
    RunningAgent,
    admin_options,
    device_config,
    make_config,
    make_keys,
    make_payload_bytes,
    mqtt_section,
    start_agent,
    wait_until,
)
from tools.tiny.corpus import TINY_CLASSES
from tools.tiny.device import TinyDevice, make_device

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
BIG = 100_000  # corpus size for payloads large enough to chunk
TOPICS = TopicScheme()


def _installed(config_dir: Path) -> dict[str, tuple[int, str]]:
    """Task -> (version, entry name) of every installed head."""
    return {m.task: (m.version, m.name) for m in ModelStore(config_dir).installed()}


def _retained_tasks(broker: Broker) -> dict[str, set[TopicKind]]:
    """Task -> the kinds of retained message its topics hold in group lab."""
    with BrokerSession(admin_options(broker)) as session:
        retained = session.collect_retained(TOPICS.tasks_filter("lab"), quiet_s=0.3)
    found: dict[str, set[TopicKind]] = {}
    for topic, body in retained.items():
        parsed = TOPICS.parse(topic)
        if body and parsed is not None and parsed.task is not None:
            found.setdefault(parsed.task, set()).add(parsed.kind)
    return found


def _auth(broker: Broker) -> list[str]:
    if broker.secure:
        return ["--username", ADMIN_USER, "--password-file", str(broker.password_file(ADMIN_USER))]
    return ["--mqtt3"]


def _parity(tiny: TinyDevice, *, version: int = 1) -> bytes:
    """A second task over the same corpus: is the true class even or odd."""
    return tiny.payload(
        task="parity", version=version, labels=tiny.labels % 2, class_names=("even", "odd")
    )


def test_two_tasks_on_one_agent_both_predict(broker: Broker, tmp_path: Path) -> None:
    # Prepare: a real tiny device (corpus, ONNX encoder, pipeline) on the broker.
    tiny = make_device(tmp_path / "tiny", num_images=60, epochs=10)
    broker.add_user("dev-real")
    config = device_config(tiny.config, broker, "dev-real", tmp_path)
    config_path = tmp_path / "agent.toml"
    config_path.write_text(dump_toml(config.model_dump(mode="json", exclude_none=True)), "utf-8")
    agent = start_agent(config, PipelineApplier(config))
    admin = admin_options(broker)
    # Execute
    publish_payload(tiny.payload(version=1), options=admin, group="lab", check=True)
    publish_payload(_parity(tiny), options=admin, group="lab", check=True)
    wait_until(lambda: len(_installed(config.state.dir)) == 2, timeout_s=60, what="two tasks")
    wait_until(
        lambda: (
            {t: s["state"] for t, s in agent.app.status.to_dict()["tasks"].items()}
            == {"shapes": "ready", "parity": "ready"}
        ),
        what="both tasks ready in status",
    )
    tasks_status = agent.app.status.to_dict()["tasks"]
    agent.stop()
    predictor = Predictor.from_config(config)
    images = [tiny.corpus.image(i) for i in range(len(tiny.corpus))]
    answers = predictor.predict_tasks(images, top_k=1)
    image = tmp_path / "img.png"
    images[0].save(image)
    code = agent_main(["predict", str(image), "--config", str(config_path), "--json"])
    only = agent_main(["predict", str(image), "--config", str(config_path), "--task", "parity"])
    # Assert
    assert {t: s["state"] for t, s in tasks_status.items()} == {
        "shapes": "ready",
        "parity": "ready",
    }
    assert sorted(answers) == ["parity", "shapes"]
    shapes_hits = np.mean(
        [a[0][0] == n for a, n in zip(answers["shapes"], _names(tiny), strict=True)]
    )
    parity_hits = np.mean(
        [
            a[0][0] == ("even", "odd")[y % 2]
            for a, y in zip(answers["parity"], tiny.labels, strict=True)
        ]
    )
    # Each head answers its own task over the shared features (trained on these very images).
    assert shapes_hits > 0.6 and parity_hits > 0.6
    assert (code, only) == (0, 0)


def _names(tiny: TinyDevice) -> list[str]:
    return [TINY_CLASSES[int(y)] for y in tiny.labels]


def test_predict_cli_json_has_every_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: the offline path (apply) for two tasks, then one predict call.
    tiny = make_device(tmp_path / "tiny", num_images=40, epochs=5)
    config = str(tiny.config_path)
    for name, data in (("shapes", tiny.payload()), ("parity", _parity(tiny))):
        path = tmp_path / f"{name}.plada"
        path.write_bytes(data)
        assert agent_main(["apply", str(path), "--config", config]) == 0
    image = tmp_path / "img.png"
    tiny.corpus.image(3).save(image)
    capsys.readouterr()
    # Execute
    code = agent_main(["predict", str(image), "--config", config, "--json", "--top", "1"])
    rows = json.loads(capsys.readouterr().out)
    missing = agent_main(["predict", str(image), "--config", config, "--task", "absent"])
    # Assert
    assert code == 0 and missing == 69
    assert sorted(rows[0]["tasks"]) == ["parity", "shapes"]
    assert rows[0]["tasks"]["parity"]["top"][0]["class"] in ("even", "odd")
    assert "top" not in rows[0]  # several heads: per task only


def test_late_joiner_receives_every_task_of_its_group(broker: Broker, tmp_path: Path) -> None:
    # Prepare: two tasks published before the device exists (one of them chunked).
    keys = make_keys(tmp_path / "keys")
    shapes = make_payload_bytes(keys, task="shapes", size=BIG)
    bins = make_payload_bytes(keys, task="bins", k=3000, size=BIG, num_classes=2, seed=1)
    admin = admin_options(broker)
    publish_payload(shapes, options=admin, group="lab", check=True)
    publish_payload(bins, options=admin, group="lab", check=True, max_chunk_bytes=1024)
    broker.add_user("late")
    config = make_config(
        tmp_path, device_id="late", public_key=keys.public_path, mqtt=mqtt_section(broker, "late")
    )
    applier = FakeApplier([keys.public_path], size=BIG)
    # Execute
    agent = start_agent(config, applier)
    wait_until(lambda: len(_installed(config.state.dir)) == 2, what="both tasks")
    wait_until(
        lambda: {r["task"] for r in _rows(broker, "late")} == {"bins", "shapes"},
        what="two rows in fleet status",
    )
    rows = _rows(broker, "late")
    agent.stop()
    # Assert
    assert sorted(applier.applied) == sorted([payload_digest(shapes), payload_digest(bins)])
    assert {(r["task"], r["state"], r["version"]) for r in rows} == {
        ("bins", "ready", 1),
        ("shapes", "ready", 1),
    }
    assert _retained_tasks(broker) == {
        "shapes": {TopicKind.TASK},
        "bins": {TopicKind.MANIFEST, TopicKind.CHUNK},
    }


def _rows(broker: Broker, device_id: str) -> list[dict[str, object]]:
    return [
        r
        for d in fleet_status(admin_options(broker))
        if d.device_id == device_id
        for r in d.task_rows()
    ]


def _start_with_two(
    broker: Broker, tmp_path: Path, keys: Keys, device_id: str = "dev-1"
) -> tuple[AgentConfig, FakeApplier, RunningAgent]:
    """An agent on the broker with shapes v1 and bins v1 installed (published the usual way)."""
    shapes = make_payload_bytes(keys, task="shapes", version=1)
    bins = make_payload_bytes(keys, task="bins", version=1, num_classes=2, seed=1)
    broker.add_user(device_id)
    config = make_config(
        tmp_path,
        device_id=device_id,
        public_key=keys.public_path,
        mqtt=mqtt_section(broker, device_id),
    )
    applier = FakeApplier([keys.public_path])
    agent = start_agent(config, applier)
    admin = admin_options(broker)
    publish_payload(shapes, options=admin, group="lab", check=True)
    publish_payload(bins, options=admin, group="lab", check=True)
    wait_until(lambda: len(_installed(config.state.dir)) == 2, what="two tasks")
    return config, applier, agent


def test_new_version_of_one_task_leaves_the_other_untouched(broker: Broker, tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    config, applier, agent = _start_with_two(broker, tmp_path, keys)
    before = _installed(config.state.dir)
    shapes_v2 = make_payload_bytes(keys, task="shapes", version=2, seed=3)
    # Execute
    report = publish_payload(shapes_v2, options=admin_options(broker), group="lab", check=True)
    wait_until(lambda: _installed(config.state.dir)["shapes"][0] == 2, what="shapes v2")
    agent.stop()
    # Assert
    after = _installed(config.state.dir)
    assert after["bins"] == before["bins"]  # the very same entry: untouched
    assert len(applier.applied) == 3
    assert report.cleared == []  # shapes v1's topic is overwritten, nothing of bins is touched
    assert _retained_tasks(broker) == {"shapes": {TopicKind.TASK}, "bins": {TopicKind.TASK}}


def test_rollback_of_one_task_under_the_daemon(broker: Broker, tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    config, applier, agent = _start_with_two(broker, tmp_path, keys)
    shapes_v2 = make_payload_bytes(keys, task="shapes", version=2, seed=3)
    publish_payload(shapes_v2, options=admin_options(broker), group="lab", check=True)
    wait_until(lambda: _installed(config.state.dir)["shapes"][0] == 2, what="shapes v2")
    bins_before = _installed(config.state.dir)["bins"]
    # Execute: the operator rolls shapes back (what `plada-agent rollback --task shapes` runs)
    ModelStore(config.state.dir).rollback("shapes")
    wait_until(
        lambda: agent.app.status.to_dict()["tasks"]["shapes"]["version"] == 1,
        what="status to show shapes v1",
    )
    agent.stop()
    # without its subscription record the restarted agent subscribes again, so the retained v2
    # comes again (as after a session loss): it must stay rolled back
    subscription_record(config).unlink()
    again = start_agent(config, applier)
    wait_until(lambda: again.app.triallog.totals()["messages"] >= 5, what="the redelivery")
    again.stop()
    # Assert
    after = _installed(config.state.dir)
    assert after["shapes"][0] == 1 and after["bins"] == bins_before
    assert applier.applied.count(payload_digest(shapes_v2)) == 1  # not reinstalled on restart


def test_retirement_signed_applies_and_forged_is_refused(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    forger = make_keys(tmp_path / "forger")
    config, _, agent = _start_with_two(broker, tmp_path, keys)
    forged = encode_tombstone(make_tombstone("bins", 1), signing_key=forger.private)
    auth = ["--broker", broker.url, "--group", "lab", *_auth(broker)]
    trust = ["--trusted-key", str(keys.public_path)]
    # Execute: a forged tombstone straight on the topic (a compromised publisher), then via the
    # CLI (refused before anything is sent), then the real one.
    with BrokerSession(admin_options(broker)) as session:
        session.wait_acked([session.publish(TOPICS.task_retired("lab", "bins"), forged)])

    def refused() -> bool:
        error = agent.app.status.last_error
        return error is not None and error.payload_id == payload_digest(forged)

    wait_until(refused, what="the forged retirement refused")
    forged_error = agent.app.status.last_error
    still = set(_installed(config.state.dir))
    forged_file = tmp_path / "forged.tomb"
    forged_file.write_bytes(forged)
    cli_forged = build_main(["retire", "--tombstone", str(forged_file), *auth, *trust])
    cli_real = build_main(
        [
            "retire",
            "bins",
            "--version",
            "1",
            "--signing-key",
            str(keys.public_path.with_name("private.pem")),
            *auth,
            *trust,
        ]
    )
    wait_until(lambda: "bins" not in _installed(config.state.dir), what="bins retired")
    wait_until(
        lambda: agent.app.status.to_dict()["tasks"].get("bins", {}).get("state") == "retired",
        what="status to show bins retired",
    )
    rows = {r["task"]: r for r in _rows(broker, "dev-1")}
    agent.stop()
    # A device joining after the retirement gets shapes only.
    broker.add_user("late")
    late_config = make_config(
        tmp_path, device_id="late", public_key=keys.public_path, mqtt=mqtt_section(broker, "late")
    )
    late = start_agent(late_config, FakeApplier([keys.public_path]))
    wait_until(lambda: bool(_installed(late_config.state.dir)), what="the late joiner")
    wait_until(
        lambda: ModelStore(late_config.state.dir).task_record("bins") is not None,
        what="the late joiner to see the retirement",
    )
    late.stop()
    err = capsys.readouterr().err
    # Assert
    assert forged_error is not None and forged_error.code == "PayloadSignatureError"
    assert still == {"bins", "shapes"}
    assert cli_forged == 65 and "refused" in err
    assert cli_real == 0
    record = ModelStore(config.state.dir).task_record("bins")
    assert record is not None and record.is_retired and record.highest_version == 1
    assert set(_installed(config.state.dir)) == {"shapes"}
    assert rows["bins"]["state"] == "retired" and rows["shapes"]["state"] == "ready"
    assert _retained_tasks(broker) == {"shapes": {TopicKind.TASK}, "bins": {TopicKind.RETIRED}}
    events = TrialLog(config.state.dir).events("retired")
    assert [(e.task, e.version) for e in events] == [("bins", 1)]
    assert set(_installed(late_config.state.dir)) == {"shapes"}


def test_a_newer_version_teaches_a_retired_task_anew(broker: Broker, tmp_path: Path) -> None:
    # Prepare: bins retired up to v1 on a running agent
    keys = make_keys(tmp_path / "keys")
    config, applier, agent = _start_with_two(broker, tmp_path, keys)
    admin = admin_options(broker)
    tombstone = encode_tombstone(make_tombstone("bins", 1), signing_key=keys.private)
    retire_task(tombstone, options=admin, group="lab", trusted_keys=_trusted(keys))
    wait_until(lambda: "bins" not in _installed(config.state.dir), what="bins retired")
    bins_v1 = make_payload_bytes(keys, task="bins", version=1, num_classes=2, seed=1)
    bins_v2 = make_payload_bytes(keys, task="bins", version=2, num_classes=2, seed=2)
    # Execute
    with pytest.raises(PublishRefusedError, match="retired in this group"):
        publish_payload(bins_v1, options=admin, group="lab", check=True)
    report = publish_payload(bins_v2, options=admin, group="lab", check=True)
    wait_until(lambda: "bins" in _installed(config.state.dir), what="bins v2")
    agent.stop()
    # Assert
    assert _installed(config.state.dir)["bins"][0] == 2
    assert report.cleared == [TOPICS.task_retired("lab", "bins")]
    assert _retained_tasks(broker) == {"shapes": {TopicKind.TASK}, "bins": {TopicKind.TASK}}
    assert applier.applied.count(payload_digest(bins_v2)) == 1


def _trusted(keys: Keys) -> dict[str, Any]:
    return load_trusted_keys([keys.public_path])


def test_daemon_killed_while_installing_the_second_task(broker: Broker, tmp_path: Path) -> None:
    # Prepare: a real tiny device; the first task installs, the second one's training pauses.
    tiny = make_device(tmp_path / "tiny", num_images=60, epochs=5)
    broker.add_user("dev-kill")
    config = device_config(tiny.config, broker, "dev-kill", tmp_path)
    config_path = tmp_path / "agent.toml"
    config_path.write_text(dump_toml(config.model_dump(mode="json", exclude_none=True)), "utf-8")
    marker = tmp_path / "training.marker"
    log = tmp_path / "agent.log"
    probe = admin_probe(broker, "plada/device/dev-kill/#")
    shapes, parity = tiny.payload(version=1), _parity(tiny)
    slow = spawn_python(
        [
            "-m",
            "tests.support.slow_agent",
            "--config",
            str(config_path),
            "--marker",
            str(marker),
            "--slow-task",
            "parity",
        ],
        log,
    )
    try:
        wait_until(
            lambda: probe.last("plada/device/dev-kill/availability") == b"online",
            what="the slow agent to connect",
        )
        publish_payload(shapes, options=admin_options(broker), group="lab", check=True)
        wait_until(
            lambda: probe.last("plada/device/dev-kill/result/shapes") is not None,
            timeout_s=60,
            what="the first task",
        )
        first = _installed(config.state.dir)
        publish_payload(parity, options=admin_options(broker), group="lab", check=True)
        wait_until(marker.exists, timeout_s=60, what="the second task's training to start")
        # Execute: kill -9 mid-install of the second task, then start the real daemon
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=10)
    finally:
        if slow.poll() is None:
            slow.kill()
    during = _installed(config.state.dir)
    daemon = spawn_python(["-m", "agent", "run", "--config", str(config_path)], log)
    try:
        wait_until(
            lambda: probe.last("plada/device/dev-kill/result/parity") is not None,
            timeout_s=60,
            what="the second task after the restart",
        )
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    status = json.loads(probe.last("plada/device/dev-kill/status") or b"{}")
    probe.close()
    # Assert
    assert code == 0, log.read_text(encoding="utf-8")[-3000:]
    assert set(first) == {"shapes"} and during == first  # the kill changed nothing installed
    after = _installed(config.state.dir)
    assert after["shapes"] == first["shapes"]  # the first task was not touched or retrained
    assert after["parity"][0] == 1
    faults = TrialLog(config.state.dir).events("fault")
    assert any(e.code == "AgentInterrupted" and e.task == "parity" for e in faults)
    assert {t: s["state"] for t, s in status["tasks"].items()} == {
        "parity": "ready",
        "shapes": "ready",
    }
