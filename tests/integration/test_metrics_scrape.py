"""The real `plada-agent run` daemon with `[metrics] listen` set, against a real broker: a
Prometheus scrape over HTTP shows the installed task's version and the fault a bad payload caused
(issue 19, item 6)."""

from __future__ import annotations

import signal
import socket
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent.profiles import dump_toml
from agent.triallog import TrialLog
from builder.fleet.publish import publish_payload
from tests.support.mqtt_probe import admin_probe
from tests.support.spawn import spawn_python
from tools.devbroker import Broker
from tools.fleet_harness import admin_options, device_config, wait_until
from tools.tiny.device import make_device

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parents[2]
DEVICE = "dev-metrics"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - http://127.0.0.1
            text = response.read().decode("utf-8")
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_scrape_of_the_running_daemon_shows_version_and_fault(
    broker: Broker, tmp_path: Path
) -> None:
    # Prepare: a tiny device whose config points at the test broker, metrics on a free port
    tiny = make_device(tmp_path / "tiny", num_images=40, epochs=3)
    broker.add_user(DEVICE)
    config = device_config(tiny.config, broker, DEVICE, tmp_path)
    port = _free_port()
    data = config.model_dump(mode="json", exclude_none=True)
    data["metrics"] = {"listen": f"127.0.0.1:{port}"}
    config_path = tmp_path / "agent.toml"
    config_path.write_text(dump_toml(data), "utf-8")
    url = f"http://127.0.0.1:{port}/metrics"
    log = tmp_path / "agent.log"
    admin = admin_probe(broker, f"plada/device/{DEVICE}/#")
    daemon = spawn_python(["-m", "agent", "run", "--config", str(config_path)], log)
    try:
        wait_until(
            lambda: admin.last(f"plada/device/{DEVICE}/availability") == b"online",
            what="the daemon to connect",
        )
        # Execute: v1 installs; an unsigned v2 is refused (a payload fault); Prometheus scrapes
        publish_payload(tiny.payload(version=1), options=admin_options(broker), group="lab")
        wait_until(
            lambda: admin.last(f"plada/device/{DEVICE}/result/shapes") is not None,
            timeout_s=60,
            what="v1 installed",
        )
        unsigned = tiny.payload(version=2, signed=False)
        publish_payload(unsigned, options=admin_options(broker), group="lab")
        fault = (
            "plada_agent_faults_total",
            (("code", "PayloadSignatureError"), ("fault", "payload")),
        )
        wait_until(lambda: fault in _scrape(url), timeout_s=30, what="the fault in a scrape")
        samples = _scrape(url)
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        admin.close()
    # Assert
    assert code == 0, log.read_text(encoding="utf-8")[-3000:]
    assert samples[("plada_agent_task_installed_version", (("task", "shapes"),))] == 1
    assert samples[fault] == 1
    assert samples[("plada_agent_link_connected", ())] == 1
    received = sum(
        value
        for (name, labels), value in samples.items()
        if name == "plada_agent_received_bytes_total"
    )
    assert received == TrialLog(config.state.dir).totals()["payload_bytes"]
    assert received > len(unsigned)
    assert _scrape(url) == {}  # the endpoint stopped with the daemon
