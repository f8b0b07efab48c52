"""Fixtures for the fleet integration tests: a real broker (mosquitto) per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.devbroker import Broker, start_broker


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = start_broker(tmp_path / "broker")
    try:
        yield running
    finally:
        running.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line for CI logs: how many broker tests ran, against which broker."""
    counts: dict[str, int] = {}
    for outcome in ("passed", "failed", "error", "skipped"):
        reports = terminalreporter.stats.get(outcome, [])
        n = sum(
            1
            for r in reports
            if getattr(r, "when", "call") in ("call", "setup")
            and "broker" in getattr(r, "keywords", {})
            and (outcome != "passed" or r.when == "call")
        )
        if n:
            counts[outcome] = n
    if counts:
        kind = "mosquitto" if shutil.which("mosquitto") else "amqtt fallback"
        if os.environ.get("PLADA_TEST_BROKER") == "amqtt":
            kind = "amqtt fallback"
        summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
        terminalreporter.write_line(f"broker tests ({kind}): {summary}")
