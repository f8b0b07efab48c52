"""The soak's settle rule: a device hit by a late broker restart or kill owes a fresh status."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from bench.soak.chaos import Injection
from bench.soak.observer import Observer, Seen
from bench.soak.run import _owed_reports


def _chaos(*injections: Injection) -> Any:
    return SimpleNamespace(injections=list(injections))


def test_late_broker_restart_owes_a_status_from_every_device_that_was_up() -> None:
    # Setup
    restart = Injection("broker_restart", 100.0, "g0", cleared_at=102.0)
    restart.detail["alive"] = ["a", "b"]
    kill = Injection("kill_other", 90.0, "g0", device_id="a", cleared_at=105.0)
    junk = Injection("junk_task", 110.0, "g1", cleared_at=110.0)
    # Execute
    owed = _owed_reports(_chaos(restart, kill, junk))
    # Assert
    assert owed == {"a": 105.0, "b": 102.0}


def test_skipped_and_uncleared_faults_owe_nothing() -> None:
    # Setup
    skipped = Injection("kill_other", 90.0, "g0", device_id="a", cleared_at=95.0)
    skipped.detail["skipped"] = True
    open_ = Injection("kill_other", 90.0, "g0", device_id="b")
    # Execute / Assert
    assert _owed_reports(_chaos(skipped, open_)) == {}


def test_a_retained_copy_redelivered_after_the_restart_is_not_a_fresh_status() -> None:
    # Setup
    observer = Observer("mqtt://127.0.0.1:1", username=None, password=None)
    observer.seen = [
        Seen(103.0, "a", "status", {"version": 3}, retained=True),
        Seen(101.0, "b", "status", {"version": 3}, retained=False),
        Seen(104.0, "b", "status", {"version": 3}, retained=False),
    ]
    # Execute / Assert
    assert not observer.published_since("a", 102.0)
    assert observer.published_since("b", 102.0)
    assert not observer.published_since("b", 104.5)
