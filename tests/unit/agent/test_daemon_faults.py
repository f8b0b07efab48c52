"""The daemon under faults, with the real pipeline on a tiny device (issue 14, items 1, 2, 3, 9).

A device never dies on a fault and never loses a task: a payload fault is refused once and
reported; a device fault is reported, the installed model keeps serving, and the task installs
once the cause is gone.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from agent.app import AgentApp, PipelineApplier
from agent.cache_rows import SEGMENT_GLOB
from agent.cli import main as agent_main
from agent.models import ModelStore
from plada.payload import payload_digest
from tools.fleet_harness import FakeLink, run_app_until
from tools.tiny.damage import corrupt_corpus_image
from tools.tiny.device import TinyDevice, make_device

TASK_TOPIC = "plada/group/default/task"
STATUS_TOPIC = "plada/device/test-device/status"
RESULT_TOPIC = "plada/device/test-device/result/shapes"
_FAST_RETRY = "[recovery]\nretry_min_s = 0.3\nretry_max_s = 1.0\nwatch_interval_s = 0.2\n"


@pytest.fixture
def device(tmp_path: Path) -> TinyDevice:
    return make_device(tmp_path, num_images=40, epochs=3, extra_toml=_FAST_RETRY)


def _app(device: TinyDevice, link: FakeLink) -> AgentApp:
    return AgentApp(
        device.config, link=link, applier=PipelineApplier(device.config), stop=threading.Event()
    )


def _statuses(link: FakeLink) -> list[dict[str, object]]:
    return [json.loads(body) for topic, body in link.published if topic == STATUS_TOPIC]


def _installed(device: TinyDevice) -> tuple[str, int] | None:
    current = ModelStore(device.config.state.dir).current()
    return None if current is None else (current.task, current.version)


def test_corrupt_corpus_image_is_a_device_fault_retried_until_repaired(
    device: TinyDevice,
) -> None:
    # Prepare: v1 installed; then an image every payload keeps is damaged on disk
    link = FakeLink()
    app = _app(device, link)
    link.deliver(TASK_TOPIC, device.payload(version=1))
    run_app_until(app, lambda: _installed(device) == ("shapes", 1))
    # v1's features were kept as rows (agent/cache_rows.py) and would serve v2 without reading
    # a single image: forget them, so v2 reads image 7 from the corpus again
    for rows in Path(device.config.cache.dir).rglob(SEGMENT_GLOB):
        rows.unlink()
    damage = corrupt_corpus_image(device.config.corpus.path, index=7)
    v2 = device.payload(version=2)
    link2 = FakeLink()
    app2 = _app(device, link2)
    link2.deliver(TASK_TOPIC, v2)

    def fault_seen() -> bool:
        errors = [s["last_error"] for s in _statuses(link2) if s["last_error"]]
        return any(isinstance(e, dict) and e["code"] == "CorpusCorruptError" for e in errors)

    # Execute: the daemon reports the fault and keeps serving v1; the corpus is repaired
    thread = run_app_until(app2, fault_seen, timeout_s=20)
    during = _installed(device)
    damage.repair()
    assert agent_main(["check-config", "--config", str(device.config_path)]) == 0
    link3 = FakeLink()
    app3 = _app(device, link3)
    run_app_until(app3, lambda: _installed(device) == ("shapes", 2), timeout_s=30)
    # Assert
    assert thread.failure is None  # stopped by the test, not by the fault
    assert fault_seen()
    assert during == ("shapes", 1)
    error = next(s["last_error"] for s in _statuses(link2) if s["last_error"])
    assert isinstance(error, dict)
    assert error["fault"] == "device" and "image 7" in str(error["message"])
    assert "plada corpus verify" in str(error["hint"])
    assert _installed(device) == ("shapes", 2)
    assert payload_digest(v2) not in app3.state.rejected
    faults = [e for e in app3.triallog.events("fault") if e.code == "CorpusCorruptError"]
    assert faults and faults[0].fault == "device"


def test_corpus_repair_is_noticed_without_a_restart(device: TinyDevice) -> None:
    # Prepare
    damage = corrupt_corpus_image(device.config.corpus.path, index=3)
    link = FakeLink()
    app = _app(device, link)
    link.deliver(TASK_TOPIC, device.payload(version=1))
    repaired = threading.Timer(1.5, damage.repair)
    # Execute
    repaired.start()
    thread = run_app_until(app, lambda: _installed(device) == ("shapes", 1), timeout_s=30)
    repaired.join()
    # Assert
    assert thread.failure is None and not thread.is_alive()
    assert _installed(device) == ("shapes", 1)
    assert any(e.code == "CorpusCorruptError" for e in app.triallog.events("fault"))


def test_payload_with_zero_indices_is_refused_once_and_the_daemon_goes_on(
    device: TinyDevice,
) -> None:
    # Prepare
    link = FakeLink()
    app = _app(device, link)
    empty = device.payload(version=1, indices=np.zeros(0, dtype=np.int64))
    link.deliver(TASK_TOPIC, empty)
    link.deliver(TASK_TOPIC, empty)  # redelivered: already refused, not tried again
    link.deliver(TASK_TOPIC, device.payload(version=2))
    # Execute
    thread = run_app_until(app, lambda: _installed(device) == ("shapes", 2), timeout_s=30)
    # Assert
    assert thread.failure is None and not thread.is_alive()
    refusals = [e for e in app.triallog.events("fault") if e.payload_id == payload_digest(empty)]
    assert [(e.fault, e.code) for e in refusals] == [("payload", "PayloadValueError")]
    assert payload_digest(empty) in app.state.rejected


def test_unreadable_probe_image_is_skipped_and_the_result_published(tmp_path: Path) -> None:
    # Prepare: a probe set with one good image and one that is not an image at all
    probe = tmp_path / "probe"
    (probe / "circle").mkdir(parents=True)
    device = make_device(
        tmp_path / "dev",
        num_images=40,
        epochs=3,
        extra_toml=f'[mqtt]\nprobe_dir = "{probe}"\n',
    )
    device.corpus.image(0).save(probe / "circle" / "good.png")
    (probe / "circle" / "bad.png").write_bytes(b"not a png at all")
    link = FakeLink()
    app = _app(device, link)
    link.deliver(TASK_TOPIC, device.payload(version=1))
    # Execute
    thread = run_app_until(app, lambda: link.last(RESULT_TOPIC) is not None, timeout_s=30)
    # Assert
    assert thread.failure is None and not thread.is_alive()
    result = json.loads(link.last(RESULT_TOPIC) or b"{}")
    assert result["probe_size"] == 1 and result["probe_skipped"] == 1
    assert result["probe_accuracy"] is not None


def test_rollback_under_the_daemon_shows_in_status_and_sticks(device: TinyDevice) -> None:
    # Prepare: v1 then v2 installed by the daemon
    link = FakeLink()
    app = _app(device, link)
    v2 = device.payload(version=2, indices=np.arange(0, 40, 2))
    link.deliver(TASK_TOPIC, device.payload(version=1))
    link.deliver(TASK_TOPIC, v2)
    run_app_until(app, lambda: _installed(device) == ("shapes", 2), timeout_s=30)
    # Execute: the operator rolls back locally while the daemon runs; v2 is then redelivered
    link2 = FakeLink()
    app2 = _app(device, link2)
    codes: list[int] = []

    def rolled_back_and_shown() -> bool:
        if not codes and link2.last(STATUS_TOPIC) is not None:  # the daemon is up
            codes.append(agent_main(["rollback", "--config", str(device.config_path)]))
        return bool(codes) and app2.status.version == 1

    run_app_until(app2, rolled_back_and_shown, timeout_s=10)
    link3 = FakeLink()
    app3 = _app(device, link3)
    link3.deliver(TASK_TOPIC, v2)
    link3.deliver(TASK_TOPIC, device.payload(version=3))
    run_app_until(app3, lambda: _installed(device) == ("shapes", 3), timeout_s=30)
    # Assert: status told the truth at once; the rolled-back v2 was refused with its reason
    assert codes == [0]
    assert app2.status.version == 1
    assert _statuses(link2)[-1]["installed_version"] == "shapes@1"
    refusals = [e for e in app3.triallog.events("fault") if e.payload_id == payload_digest(v2)]
    assert refusals and "rolled back" in str(refusals[0].message)
    assert _installed(device) == ("shapes", 3)


def test_truncated_fleet_state_is_moved_aside_and_rebuilt(device: TinyDevice) -> None:
    # Prepare: v1 installed, then the fleet state file is cut short (power loss, bad disk)
    link = FakeLink()
    app = _app(device, link)
    link.deliver(TASK_TOPIC, device.payload(version=1))
    run_app_until(app, lambda: _installed(device) == ("shapes", 1))
    state = device.config.state.dir / "fleet" / "state.json"
    state.write_bytes(state.read_bytes()[:10])
    # Execute
    link2 = FakeLink()
    app2 = _app(device, link2)
    link2.deliver(TASK_TOPIC, device.payload(version=1))  # already installed: nothing to do
    link2.deliver(TASK_TOPIC, device.payload(version=2))
    thread = run_app_until(app2, lambda: _installed(device) == ("shapes", 2), timeout_s=30)
    # Assert
    assert thread.failure is None and not thread.is_alive()
    assert list(state.parent.glob("state.json.unreadable-*"))
    codes = [e.code for e in app2.triallog.events("fault")]
    assert "FleetStateError" in codes
    assert [e.version for e in app2.triallog.events("installed")] == [1, 2]
