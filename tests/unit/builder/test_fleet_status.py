"""builder.fleet.status and `plada-build fleet status`: one row per device and task."""

from __future__ import annotations

import json

from builder.commands.fleet import status_table
from builder.fleet.status import DeviceStatus, DeviceView


def _view(device_id: str, status: dict[str, object]) -> DeviceView:
    return DeviceView(device_id, "online", DeviceStatus.model_validate_json(json.dumps(status)))


def test_status_table_has_a_row_per_device_and_task() -> None:
    # Prepare: a multi-task agent, and one from before (top-level task only)
    new = _view(
        "pi-1",
        {
            "device_class": "raspberry_pi_4",
            "state": "ready",
            "task": "fashion",
            "version": 2,
            "tasks": {
                "fashion": {"state": "ready", "version": 2},
                "digits": {"state": "retired", "version": None, "retired_version": 1},
            },
        },
    )
    old = _view("pi-2", {"device_class": "x", "state": "ready", "task": "fashion", "version": 1})
    # Execute
    rows = [r for d in (new, old) for r in d.task_rows()]
    table = status_table([new, old])
    # Assert
    assert [(r["device_id"], r["task"], r["state"], r["version"]) for r in rows] == [
        ("pi-1", "digits", "retired", 1),
        ("pi-1", "fashion", "ready", 2),
        ("pi-2", "fashion", "ready", 1),
    ]
    lines = [line for line in table.splitlines() if line.startswith("pi-")]
    assert len(lines) == 3
    assert "retired" in lines[0] and "digits" in lines[0]
