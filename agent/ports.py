"""The daemon's collaborators as protocols: what agent.app and agent.installer need from the
link, the applier and each other, so tests can hand them fakes (tests/support/fleet.py)."""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agent.fleet_state import PendingTask
    from agent.link import Inbound, LinkEvent
    from agent.models import ModelStore
    from agent.pipeline import VerifiedPayload
    from agent.status import LastError

ProgressFn = Callable[[float, str], None]


@dataclass(frozen=True)
class ProbeResult:
    accuracy: float | None  # None when no image could be scored
    images: int  # scored
    skipped: int  # unreadable, named in the log


class Applied(Protocol):
    """What an applier returns (agent.pipeline.AppliedTask has these attributes)."""

    @property
    def task(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def num_indices(self) -> int: ...
    @property
    def train_seconds(self) -> float: ...
    @property
    def train_accuracy(self) -> float: ...


class Applier(Protocol):
    """Installs a verified payload into the store (the real one wraps agent.pipeline)."""

    def apply(
        self, verified: VerifiedPayload, *, store: ModelStore, progress: ProgressFn
    ) -> Applied: ...


class DaemonApplier(Applier, Protocol):
    """What the daemon needs beyond installing: idle work, fault-cause files, the probe set."""

    def warm_step(self, should_stop: Callable[[], bool]) -> bool: ...
    def watch_paths(self) -> list[Path]: ...
    def evaluate_probe(self, task: str) -> ProbeResult | None: ...


class InstallerEvents(Protocol):
    """What the daemon shows while the installer works (status, results)."""

    def on_progress(self, task: str, version: int, fraction: float, stage: str) -> None: ...
    def on_installed(
        self, pending: PendingTask, applied: Applied | None, ready_at: float
    ) -> None: ...


class Link(Protocol):
    inbox: queue.Queue[Inbound | LinkEvent]

    @property
    def mqtt5(self) -> bool: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def ack(self, inbound: Inbound) -> None: ...
    def want_chunks(self, topics: Iterable[str], *, resync: int | None = None) -> None: ...
    def publish(self, topic: str, payload: bytes, *, retain: bool = True, qos: int = 1) -> None: ...


ErrorSink = Callable[["LastError"], None]
