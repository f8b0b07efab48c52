"""What the agent sends up while it installs a task (issue 19: a 9.6 kbit/s link pays for every
status): progress coalesced within a state, a status that says nothing new skipped unless it is a
heartbeat, a retained Home Assistant task config sent once per connection, compact JSON."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.app import AgentApp
from agent.link import LinkEvent
from agent.status import LastError
from tools.fleet_harness import FakeApplier, FakeLink, Keys, make_config, make_keys

STATUS_TOPIC = "plada/device/dev-1/status"
HA_TOPIC = "homeassistant/update/plada_dev-1/shapes/config"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def _app(tmp_path: Path, keys: Keys, link: FakeLink, **mqtt: Any) -> AgentApp:
    config = make_config(tmp_path, public_key=keys.public_path, mqtt=mqtt)
    return AgentApp(
        config, link=link, applier=FakeApplier([keys.public_path]), stop=threading.Event()
    )


def _statuses(link: FakeLink) -> list[dict[str, Any]]:
    return [json.loads(body) for topic, body in link.published if topic == STATUS_TOPIC]


def test_an_install_shorter_than_the_interval_sends_only_its_outcome(
    tmp_path: Path, keys: Keys
) -> None:
    # Prepare
    link = FakeLink()
    app = _app(tmp_path, keys, link, progress_interval_s=3600)
    fault = LastError(code="PayloadSignatureError", message="bad", at=1.0, fault="payload")
    # Execute: four progress steps of one training, then a fault
    for fraction, stage in ((0.0, "starting"), (0.1, "features"), (0.6, "train"), (0.9, "store")):
        app.on_progress("shapes", 2, fraction, stage)
    app._tick()  # nothing is due yet
    app.on_fault(fault)
    # Assert: only the fault went out; the progress never did
    assert [(s["state"], s["detail"]) for s in _statuses(link)] == [("error", "")]


def test_a_long_install_shows_its_progress_once_per_interval(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a clock the test moves
    now = [1000.0]
    monkeypatch.setattr("agent.app.time.monotonic", lambda: now[0])
    link = FakeLink()
    app = _app(tmp_path, keys, link, progress_interval_s=5)
    # Execute: progress at 0, 2, 6 (due: 5 s after the start), 8 and 12 s (due again)
    for at, (fraction, stage) in zip(
        (0, 2, 6, 8, 12),
        ((0.0, "starting"), (0.2, "features"), (0.4, "train"), (0.6, "train"), (0.9, "store")),
        strict=True,
    ):
        now[0] = 1000.0 + at
        app.on_progress("shapes", 2, fraction, stage)
    held_before_tick = [s["detail"] for s in _statuses(link)]
    now[0] = 1000.0 + 30  # no more progress: the loop's tick sends what was held, once
    app._tick()
    app._tick()
    # Assert
    assert held_before_tick == ["train", "store"]
    assert [s["detail"] for s in _statuses(link)] == ["train", "store"]
    app.on_progress("shapes", 2, 0.95, "store")  # long after the last send: goes at once
    now[0] += 1
    app.on_progress("shapes", 2, 0.97, "store")  # 1 s after it: held
    assert [s["detail"] for s in _statuses(link)][2:] == ["store"]
    assert [s["progress"] for s in _statuses(link)][2:] == [95.0]


def test_progress_interval_zero_sends_every_step_but_the_last(tmp_path: Path, keys: Keys) -> None:
    # Prepare
    link = FakeLink()
    app = _app(tmp_path, keys, link, progress_interval_s=0)
    # Execute
    for fraction, stage in ((0.0, "starting"), (0.6, "train"), (1.0, "done")):
        app.on_progress("shapes", 2, fraction, stage)
    # Assert: each step went, but 100 % waits for ready (or a fault), which follows at once
    assert [s["detail"] for s in _statuses(link)] == ["starting", "train"]


def test_a_status_that_says_nothing_new_goes_only_as_a_heartbeat(
    tmp_path: Path, keys: Keys
) -> None:
    # Prepare
    link = FakeLink()
    app = _app(tmp_path, keys, link)
    # Execute
    app.publish_status(force=True)
    app.publish_status(force=True)  # e.g. the store's record touched, nothing else changed
    app.publish_status(force=True, heartbeat=True)  # the periodic one
    # Assert
    assert len(_statuses(link)) == 2
    body = link.last(STATUS_TOPIC)
    assert body is not None and b", " not in body and b'":' in body  # compact JSON


def test_a_task_config_goes_once_per_connection(tmp_path: Path, keys: Keys) -> None:
    # Prepare
    link = FakeLink()
    app = _app(tmp_path, keys, link, home_assistant=True)

    def sent() -> list[bytes]:
        return [body for topic, body in link.published if topic == HA_TOPIC]

    # Execute / Assert: a second install of the task leaves the retained config alone
    app._announce_task("shapes", present=True)
    app._announce_task("shapes", present=True)
    assert len(sent()) == 1 and sent()[0]
    # a new connection sends it again (the broker may have lost it), a retirement removes it
    app._link_event(LinkEvent(connected=True, reason="connected", at=2.0, connection=2))
    app._announce_task("shapes", present=True)
    app._announce_task("shapes", present=False)
    assert [bool(body) for body in sent()] == [True, True, False]
