"""The Prometheus collector over a tiny device's records, and the endpoint the daemon serves."""

from __future__ import annotations

import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent.app import AgentApp, PipelineApplier
from agent.config import AgentConfig
from agent.link import LinkEvent
from agent.metrics import AgentCollector, start_metrics
from agent.triallog import TrialLog
from tools.fleet_harness import FakeLink, run_app_until
from tools.tiny.device import TinyDevice, make_device

TASK_TOPIC = "plada/group/default/task"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def device(tmp_path: Path) -> TinyDevice:
    return make_device(tmp_path, num_images=40, epochs=3)


def _samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(collector: AgentCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    return _samples(generate_latest(registry).decode("utf-8"))


def _collector(config: AgentConfig, app: AgentApp, *, started_at: float = 0.0) -> AgentCollector:
    return AgentCollector(
        config,
        store=app.store,
        triallog=app.triallog,
        fleet_state_path=app.queue.state_path,
        started_at=started_at,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_metrics(config: AgentConfig, listen: str) -> AgentConfig:
    return config.model_copy(
        update={"metrics": config.metrics.model_copy(update={"listen": listen})}
    )


def test_collector_reads_tasks_bytes_faults_and_link_from_the_records(device: TinyDevice) -> None:
    # Prepare: v1 installs, the link drops once and comes back, an unsigned v2 is refused
    link = FakeLink()
    app = AgentApp(
        device.config, link=link, applier=PipelineApplier(device.config), stop=threading.Event()
    )
    v1 = device.payload(version=1)
    unsigned = device.payload(version=2, signed=False)
    link.deliver(TASK_TOPIC, v1)
    link.inbox.put(LinkEvent(connected=False, reason="test drop"))
    link.inbox.put(LinkEvent(connected=True, reason="test back"))
    link.deliver(TASK_TOPIC, unsigned)

    def refused() -> bool:
        return any(e.code == "PayloadSignatureError" for e in app.triallog.events("fault"))

    thread = run_app_until(app, refused, timeout_s=30)
    assert thread.failure is None
    # Execute
    samples = _scrape(_collector(device.config, app))
    # Assert
    assert samples[("plada_agent_task_installed_version", (("task", "shapes"),))] == 1
    assert samples[("plada_agent_tasks_installed", ())] == 1
    assert samples[("plada_agent_tasks_pending", ())] == 0
    received = ("plada_agent_received_bytes_total", (("kind", "task"), ("task", "shapes")))
    assert samples[received] == len(v1)
    # a refused payload's task is not trusted: on the one-task topic its bytes have no task
    refused_bytes = ("plada_agent_received_bytes_total", (("kind", "task"), ("task", "")))
    assert samples[refused_bytes] == len(unsigned)
    messages = ("plada_agent_received_messages_total", (("kind", "task"), ("task", "shapes")))
    assert samples[messages] == 1
    train = samples[("plada_agent_train_seconds", (("task", "shapes"),))]
    assert train == TrialLog(device.config.state.dir).task_summaries()[0].train_seconds
    assert train > 0
    fault = (("code", "PayloadSignatureError"), ("fault", "payload"))
    assert samples[("plada_agent_faults_total", fault)] == 1
    assert samples[("plada_agent_link_disconnects_total", ())] == 1
    assert samples[("plada_agent_link_connected", ())] == 1  # the last link event: back
    info = {
        k: v
        for (name, labels), _ in samples.items()
        if name == "plada_agent_info"
        for k, v in labels
    }
    assert info["device_id"] == "test-device"
    assert info["device_class"] == "tiny"
    assert info["encoder"] == device.encoder_path.stem


def test_a_connected_event_from_an_earlier_run_is_not_this_run_s_link(device: TinyDevice) -> None:
    # Prepare: the records of an earlier run end with "connected"
    link = FakeLink()
    app = AgentApp(
        device.config, link=link, applier=PipelineApplier(device.config), stop=threading.Event()
    )
    app.triallog.record_event(kind="link", code="connected", at=100.0)
    # Execute
    before = _scrape(_collector(device.config, app, started_at=200.0))
    after = _scrape(_collector(device.config, app, started_at=50.0))
    # Assert
    assert before[("plada_agent_link_connected", ())] == 0
    assert after[("plada_agent_link_connected", ())] == 1


def test_pending_task_shows_until_installed(tmp_path: Path) -> None:
    # Prepare: a device whose encoder is missing: the task is accepted and waits (device fault)
    tiny = make_device(tmp_path, num_images=40, epochs=3)
    tiny.encoder_path.rename(tiny.encoder_path.with_suffix(".moved"))
    link = FakeLink()
    app = AgentApp(
        tiny.config, link=link, applier=PipelineApplier(tiny.config), stop=threading.Event()
    )
    link.deliver(TASK_TOPIC, tiny.payload(version=3))
    run_app_until(app, lambda: bool(app.triallog.events("fault")), timeout_s=30)
    # Execute
    samples = _scrape(_collector(tiny.config, app))
    # Assert
    assert samples[("plada_agent_tasks_pending", ())] == 1
    assert samples[("plada_agent_task_pending_version", (("task", "shapes"),))] == 3
    assert samples[("plada_agent_tasks_installed", ())] == 0
    assert any(
        name == "plada_agent_faults_total" and ("fault", "device") in labels
        for name, labels in samples
    )


def test_daemon_serves_metrics_on_the_configured_address_only_while_running(
    device: TinyDevice,
) -> None:
    # Prepare
    port = _free_port()
    config = _with_metrics(device.config, f"127.0.0.1:{port}")
    link = FakeLink()
    app = AgentApp(config, link=link, applier=PipelineApplier(config), stop=threading.Event())
    url = f"http://127.0.0.1:{port}/metrics"
    link.deliver(TASK_TOPIC, device.payload(version=1))
    scraped: list[str] = []

    def scrape() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                scraped.append(response.read().decode("utf-8"))
        except OSError:
            return False
        return 'plada_agent_task_installed_version{task="shapes"}' in scraped[-1]

    # Execute
    thread = run_app_until(app, scrape, timeout_s=30)
    # Assert
    assert thread.failure is None
    assert scraped, "the endpoint never answered"
    samples = _samples(scraped[-1])
    assert samples[("plada_agent_task_installed_version", (("task", "shapes"),))] == 1
    assert not any(name.startswith("python_") for name, _ in samples)  # its own registry
    assert app.metrics is None
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_metrics_off_by_default_serves_nothing(device: TinyDevice) -> None:
    # Prepare
    link = FakeLink()
    app = AgentApp(
        device.config, link=link, applier=PipelineApplier(device.config), stop=threading.Event()
    )
    seen: list[object] = []

    def running() -> bool:
        seen.append(app.metrics)
        return bool(link.published)  # the first status: the loop is running

    # Execute
    run_app_until(app, running, timeout_s=10)
    # Assert
    assert seen and all(m is None for m in seen)


def test_an_address_in_use_is_a_device_fault_not_an_exit(device: TinyDevice) -> None:
    # Prepare: something else holds the port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        config = _with_metrics(device.config, f"127.0.0.1:{port}")
        link = FakeLink()
        app = AgentApp(config, link=link, applier=PipelineApplier(config), stop=threading.Event())
        # Execute
        thread = run_app_until(
            app, lambda: any(link.published) and bool(app.triallog.events("fault")), timeout_s=10
        )
    # Assert
    assert thread.failure is None
    messages = [e.message or "" for e in app.triallog.events("fault")]
    assert any(f"metrics endpoint 127.0.0.1:{port}" in m for m in messages)


def test_start_metrics_binds_the_given_address(device: TinyDevice) -> None:
    # Prepare
    link = FakeLink()
    app = AgentApp(
        device.config, link=link, applier=PipelineApplier(device.config), stop=threading.Event()
    )
    # Execute
    server = start_metrics(_collector(device.config, app), host="127.0.0.1", port=_free_port())
    try:
        host = server.server.server_address[0]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{server.port}/metrics", timeout=2
        ) as response:
            body = response.read().decode("utf-8")
    finally:
        server.stop()
    # Assert
    assert host == "127.0.0.1"
    assert "plada_agent_info" in body
