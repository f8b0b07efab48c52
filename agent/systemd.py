"""sd_notify without a systemd library: one datagram to $NOTIFY_SOCKET, a no-op outside systemd.

The watchdog is pinged from the agent's main loop (never a side thread), so a hung loop is noticed
and restarted by systemd (``WatchdogSec=`` in plada-agent.service).
"""

from __future__ import annotations

import logging
import os
import socket
import time

logger = logging.getLogger(__name__)


def notify(state: str, *, environ: dict[str, str] | None = None) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to systemd; False when not under systemd or on error."""
    env = os.environ if environ is None else environ
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        logger.warning("NOTIFY_SOCKET %r is not a unix socket path; ignoring", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        logger.warning("sd_notify %s failed: %s", state.split("=", 1)[0], exc)
        return False
    return True


def watchdog_interval_s(*, environ: dict[str, str] | None = None) -> float | None:
    """Half of systemd's watchdog period (WATCHDOG_USEC), or None if no watchdog is armed."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


class Watchdog:
    """Pings ``WATCHDOG=1`` at most every half period; call :meth:`tick` from the main loop."""

    def __init__(self, *, environ: dict[str, str] | None = None) -> None:
        self._environ = environ
        self.interval_s = watchdog_interval_s(environ=environ)
        self._last = 0.0

    def tick(self, *, now: float | None = None) -> bool:
        if self.interval_s is None:
            return False
        t = time.monotonic() if now is None else now
        if t - self._last < self.interval_s:
            return False
        self._last = t
        return notify("WATCHDOG=1", environ=self._environ)
