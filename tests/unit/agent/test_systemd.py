"""agent.systemd: sd_notify over a real unix datagram socket, and silence outside systemd."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import systemd


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_notify_sends_state_datagram(notify_socket: tuple[socket.socket, str]) -> None:
    # Prepare
    sock, path = notify_socket
    # Execute
    sent = systemd.notify("READY=1", environ={"NOTIFY_SOCKET": path})
    # Assert
    assert sent is True
    assert sock.recv(256) == b"READY=1"


def test_notify_is_noop_outside_systemd() -> None:
    assert systemd.notify("READY=1", environ={}) is False


def test_notify_survives_dead_socket(tmp_path: Path) -> None:
    assert systemd.notify("READY=1", environ={"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_notify_abstract_socket() -> None:
    # Prepare
    name = f"plada-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        # Execute
        sent = systemd.notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        # Assert
        assert sent is True
        assert sock.recv(256) == b"STOPPING=1"


def test_watchdog_pings_at_half_period(notify_socket: tuple[socket.socket, str]) -> None:
    # Prepare
    sock, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    dog = systemd.Watchdog(environ=env)
    # Execute
    ticks = [dog.tick(now=100.0), dog.tick(now=102.0), dog.tick(now=105.5)]
    # Assert
    assert dog.interval_s == 5.0
    assert ticks == [True, False, True]
    assert [sock.recv(64), sock.recv(64)] == [b"WATCHDOG=1", b"WATCHDOG=1"]


def test_watchdog_ignores_other_pid() -> None:
    env = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}
    assert systemd.watchdog_interval_s(environ=env) is None
    assert systemd.Watchdog(environ=env).tick(now=50.0) is False
