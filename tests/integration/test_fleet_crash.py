"""An agent killed with SIGKILL mid-training completes the task exactly once after a restart,
and the real `plada-agent run` daemon stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agent.models import ModelStore
from agent.profiles import dump_toml
from agent.triallog import TrialLog
from builder.fleet.publish import publish_payload
from plada.payload import payload_digest
from tests.support.mqtt_probe import admin_probe
from tests.support.spawn import spawn_python
from tools.devbroker import Broker
from tools.fleet_harness import admin_options, device_config, wait_until
from tools.tiny.device import make_device

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]


def test_sigkill_mid_training_completes_exactly_once(broker: Broker, tmp_path: Path) -> None:
    # Prepare: a real tiny device whose config file points at the test broker.
    tiny = make_device(tmp_path / "tiny", num_images=60, epochs=5)
    broker.add_user("dev-kill")
    config = device_config(tiny.config, broker, "dev-kill", tmp_path)
    config_path = tmp_path / "agent.toml"
    config_path.write_text(dump_toml(config.model_dump(mode="json", exclude_none=True)), "utf-8")
    marker = tmp_path / "training.marker"
    log = tmp_path / "agent.log"
    admin = admin_probe(broker, "plada/device/dev-kill/#")
    data = tiny.payload(version=1)
    slow = spawn_python(
        ["-m", "tests.support.slow_agent", "--config", str(config_path), "--marker", str(marker)],
        log,
    )
    try:
        wait_until(
            lambda: admin.last("plada/device/dev-kill/availability") == b"online",
            what="the slow agent to connect",
        )
        publish_payload(data, options=admin_options(broker), group="lab")
        wait_until(marker.exists, what="training to start")
        # Execute: kill -9 mid-training, then start the real daemon
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=10)
    finally:
        if slow.poll() is None:
            slow.kill()
    assert ModelStore(config.state.dir).current() is None
    daemon = spawn_python(["-m", "agent", "run", "--config", str(config_path)], log)
    try:
        wait_until(
            lambda: admin.last("plada/device/dev-kill/result/shapes") is not None,
            timeout_s=60,
            what="the result after restart",
        )
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    wait_until(
        lambda: admin.last("plada/device/dev-kill/availability") == b"offline",
        what="offline after SIGTERM",
    )
    admin.close()
    # Assert
    assert code == 0, log.read_text(encoding="utf-8")[-3000:]
    entries = ModelStore(config.state.dir).entries()
    assert [(e.task, e.version, e.payload_digest) for e in entries] == [
        ("shapes", 1, payload_digest(data))
    ]
    bodies = {p for t, p, _ in admin.messages if t.endswith("/result/shapes")}
    assert len(bodies) == 1  # one result (re-sent unchanged on reconnect), trained once
    results = [json.loads(p) for p in bodies]
    assert results[0]["time_to_model_s"] > 0
    outcomes = [s.outcome for s in TrialLog(config.state.dir).task_summaries()]
    assert outcomes == ["ready"]
    csv_path = tmp_path / "trial.csv"
    report = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "trial-report",
            "--config",
            str(config_path),
            "--json",
            "--csv",
            str(csv_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    summary = json.loads(report.stdout)
    assert summary["tasks"][0]["payload_bytes"] == len(data) * summary["tasks"][0]["messages"]
    assert csv_path.read_text(encoding="utf-8").startswith("received_at,topic")


def test_run_exits_78_on_bad_config(tmp_path: Path) -> None:
    # Prepare
    bad = tmp_path / "agent.toml"
    bad.write_text('device_id = "x"\n[mqtt]\nbrokr = "mqtt://h"\n', encoding="utf-8")
    # Execute
    run = subprocess.run(
        [sys.executable, "-m", "agent", "run", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    check = subprocess.run(
        [sys.executable, "-m", "agent", "check-config", "--config", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    # Assert
    assert run.returncode == 78
    assert check.returncode == 78
    assert "mqtt.brokr: unknown key" in run.stderr
