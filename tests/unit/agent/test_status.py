"""agent.status: the status JSON shape across the state machine, and the HA discovery config."""

from __future__ import annotations

import json

from agent.records import Retired, TaskRecord
from agent.status import AgentState, LastError, StatusReporter, TaskResult
from plada.topics import TopicScheme


def _reporter() -> StatusReporter:
    return StatusReporter(device_id="pi-1", device_class="raspberry-pi-4", topics=TopicScheme())


def test_status_starts_idle() -> None:
    status = _reporter().to_dict(now=5.0)
    assert status["state"] == "idle"
    assert status["installed_version"] is None
    assert status["in_progress"] is False
    assert status["updated_at"] == 5.0


def test_status_training_then_ready_shapes_update_entity() -> None:
    # Prepare
    reporter = _reporter()
    # Execute
    reporter.training(task="fashion", version=3, progress=42.26, detail="features")
    during = reporter.to_dict()
    reporter.ready(task="fashion", version=3)
    after = reporter.to_dict()
    # Assert
    assert during["state"] == "training"
    assert during["progress"] == 42.3
    assert during["in_progress"] is True
    assert during["update_percentage"] == 42.3
    assert during["latest_version"] == "fashion@3"
    assert during["installed_version"] is None
    assert after["state"] == "ready"
    assert after["installed_version"] == after["latest_version"] == "fashion@3"
    assert (after["task"], after["version"], after["progress"]) == ("fashion", 3, 100.0)


def test_status_rejection_keeps_installed_model() -> None:
    # Prepare
    reporter = _reporter()
    reporter.ready(task="fashion", version=3)
    # Execute
    reporter.rejected(LastError("PayloadExpiredError", "expired at 10", at=11.0, task="fashion"))
    status = json.loads(reporter.to_json())
    # Assert
    assert status["state"] == "error"
    assert status["task"] == "fashion"
    assert status["version"] == 3
    assert status["last_error"]["code"] == "PayloadExpiredError"
    assert status["rejected_count"] == 1


def test_status_progress_is_clipped() -> None:
    reporter = _reporter()
    reporter.receiving(250.0)
    assert reporter.to_dict()["progress"] == 100.0
    assert reporter.state is AgentState.RECEIVING


def test_home_assistant_discovery_points_at_status_and_availability() -> None:
    # Execute
    topic, body = _reporter().home_assistant_discovery(prefix="homeassistant")
    config = json.loads(body)
    # Assert
    assert topic == "homeassistant/update/plada_pi-1/config"
    assert config["state_topic"] == "plada/device/pi-1/status"
    assert config["availability_topic"] == "plada/device/pi-1/availability"


def test_task_result_json_round_trips() -> None:
    result = TaskResult(
        device_id="pi-1",
        device_class="x86-dev",
        task="t",
        version=1,
        payload_id="ab",
        num_indices=10,
        bytes_received=2048,
        messages=1,
        time_to_model_s=1.5,
        train_seconds=0.5,
        train_accuracy=0.9,
        probe_accuracy=None,
        probe_size=None,
        finished_at=1.0,
    )
    assert json.loads(result.to_json())["bytes_received"] == 2048


def _record(version: int | None, *, retired: int | None = None) -> TaskRecord:
    return TaskRecord(
        installed=None if version is None else f"00000{version}-t-v{version}",
        version=version,
        highest_version=version or retired or 0,
        retired=None
        if retired is None
        else Retired(version=retired, at=1.0, tombstone_digest="ab" * 32),
    )


def test_status_shows_every_task_with_its_own_state() -> None:
    # Prepare: one task ready, one training, one retired, one refused for capacity
    reporter = _reporter()
    reporter.installed(
        task="fashion",
        version=2,
        records={"fashion": _record(2), "digits": _record(1), "bins": _record(None, retired=3)},
    )
    reporter.training(task="digits", version=2, progress=50.0)
    reporter.rejected(LastError("TaskLimitError", "capacity", at=1.0, task="cars", version=1))
    reporter.training(task="digits", version=2, progress=60.0)
    # Execute
    tasks = reporter.to_dict()["tasks"]
    # Assert
    assert {t: s["state"] for t, s in tasks.items()} == {
        "bins": "retired",
        "cars": "error",
        "digits": "training",
        "fashion": "ready",
    }
    assert tasks["digits"]["installed_version"] == "digits@1"
    assert tasks["digits"]["latest_version"] == "digits@2"
    assert tasks["bins"]["retired_version"] == 3 and tasks["bins"]["version"] is None
    assert tasks["cars"]["last_error"]["code"] == "TaskLimitError"
    assert tasks["fashion"]["last_error"] is None


def test_home_assistant_has_one_update_entity_per_task() -> None:
    # Execute
    topic, body = _reporter().home_assistant_task_discovery("fashion", prefix="homeassistant")
    config = json.loads(body)
    # Assert: node plada_<id>, object id the task (what the shipped ACL allows)
    assert topic == "homeassistant/update/plada_pi-1/fashion/config"
    assert config["unique_id"] == "plada_pi-1_fashion"
    assert "tasks['fashion'].installed_version" in config["value_template"]
    assert config["device"]["identifiers"] == ["plada_pi-1"]
