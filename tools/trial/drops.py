"""Scheduled link drops: a seeded, reproducible plan, and a thread that plays it on a trial.

The gaps between drop starts are exponential with mean ``every_s`` (drops arrive as a Poisson
process, memoryless like radio-link failures), each drop lasts ``duration_s``, and a drop never
starts before the previous one ended. The same seed and device give the same plan, so a trial that
showed a problem can be re-run with the same outages.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from tools.trial.profiles import Drops

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DropWindow:
    start_s: float  # after the schedule's start
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


class DropEvent(BaseModel):
    """One drop as it was played: wall-clock times of link down and link up again."""

    model_config = ConfigDict(frozen=True)

    device: str
    down_at: float
    up_at: float


def drop_plan(drops: Drops, *, seed: int, device: str, horizon_s: float) -> list[DropWindow]:
    """Drop windows that start within ``horizon_s``; deterministic in (seed, device)."""
    device_seed = int.from_bytes(hashlib.sha256(f"{seed}:{device}".encode()).digest()[:8], "big")
    rng = random.Random(device_seed)
    windows: list[DropWindow] = []
    at = 0.0
    while True:
        at += rng.expovariate(1.0 / drops.every_s)
        if at >= horizon_s:
            return windows
        windows.append(DropWindow(start_s=round(at, 3), duration_s=drops.duration_s))
        at += drops.duration_s  # the next gap counts from the end of this drop


class DropPlayer:
    """Plays a device's drop plan in a background thread until stopped or the plan ends.

    ``set_link(up)`` is the action (``TrialNetwork.set_link`` bound to the device). Stopping in the
    middle of a drop brings the link back up first: a player never leaves a link down.
    """

    def __init__(
        self,
        device: str,
        plan: list[DropWindow],
        set_link: Callable[[bool], None],
    ) -> None:
        self.device = device
        self.plan = plan
        self.events: list[DropEvent] = []
        self._set_link = set_link
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._play, name=f"drops-{device}", daemon=True)

    def start(self) -> DropPlayer:
        self._thread.start()
        return self

    def wait(self, timeout_s: float | None = None) -> list[DropEvent]:
        """Wait until the whole plan has been played; the drops so far."""
        self._thread.join(timeout=timeout_s)
        return list(self.events)

    def stop(self) -> list[DropEvent]:
        self._stop.set()
        self._thread.join(timeout=30)
        return list(self.events)

    def _play(self) -> None:
        origin = time.monotonic()
        for window in self.plan:
            if self._stop.wait(max(0.0, origin + window.start_s - time.monotonic())):
                return
            down_at = time.time()
            self._set_link(False)
            try:
                self._stop.wait(max(0.0, origin + window.end_s - time.monotonic()))
            finally:
                self._set_link(True)
            self.events.append(DropEvent(device=self.device, down_at=down_at, up_at=time.time()))
            logger.info("%s: link down %.2f s", self.device, self.events[-1].up_at - down_at)
