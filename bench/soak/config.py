"""Soak presets: the full run `make soak` records, and the short one inside `make test`."""

from __future__ import annotations

from dataclasses import dataclass

TASKS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


@dataclass(frozen=True)
class SoakConfig:
    agents: int = 24
    groups: int = 3  # one task per group (per-task topics come with issue 17)
    duration_s: float = 1200.0  # chaos and publishing
    publish_every_s: float = 75.0  # mean time between two versions of a group's task
    chaos_every_s: float = 10.0  # mean time between two injected faults
    settle_s: float = 300.0  # after the chaos: time allowed to converge
    images: int = 48  # per device corpus
    seed: int = 1

    def __post_init__(self) -> None:
        if self.groups > len(TASKS) or self.agents < self.groups:
            raise ValueError(f"{self.agents} agents in {self.groups} groups: not possible")

    def task(self, group: int) -> str:
        return TASKS[group]


FULL = SoakConfig()
SHORT = SoakConfig(
    agents=8,
    groups=2,
    duration_s=75.0,
    publish_every_s=18.0,
    chaos_every_s=3.5,
    settle_s=120.0,
    images=32,
)
