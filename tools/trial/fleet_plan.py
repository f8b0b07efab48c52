"""Which devices a field trial runs: a name, a device class and a link profile each.

    plan_fleet("lora:3,nbiot:2", ["raspberry-pi-4", "x86-dev"], profiles)
    -> lora-1 (raspberry-pi-4), lora-2 (x86-dev), lora-3 (raspberry-pi-4), nbiot-1 (x86-dev), ...

Classes are dealt round-robin over the whole fleet in order, so every profile with two or more
devices carries more than one class: a difference between profiles is then not a difference
between encoders.

Groups: a few devices follow the canary group of the staged rollout (tools.trial.stage_rollout),
the others the rest group; the task stages publish to both. The canary is the smallest set the
greedy rule finds that holds every profile and every device class (the device adding the most
of what is still missing, first in fleet order on a tie), so a canary verdict has seen every
link and every encoder; one device at least stays in the rest, or a promotion sends nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tools.trial.errors import TrialError
from tools.trial.profiles import LinkProfile, get_profile

DEFAULT_FLEET = "lora:3,nbiot:2,ltem:3,satellite:2"  # 10 devices over 4 profiles (issue 19)
REST_GROUP = "trial"
CANARY_GROUP = "trial-canary"


@dataclass(frozen=True)
class PlannedDevice:
    name: str
    device_class: str
    profile: LinkProfile
    group: str = REST_GROUP


def plan_fleet(
    spec: str, classes: Sequence[str], profiles: dict[str, LinkProfile]
) -> list[PlannedDevice]:
    """``profile:count,...`` with the device classes dealt round-robin."""
    if not classes:
        raise TrialError("a trial needs at least one device class")
    devices: list[PlannedDevice] = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        if count and not count.isdigit():
            raise TrialError(f"fleet item {item!r}: use profile:count")
        profile = get_profile(profiles, name)
        for n in range(1, int(count or 1) + 1):
            device_class = classes[len(devices) % len(classes)]
            devices.append(PlannedDevice(f"{name}-{n}", device_class, profile))
    if not devices:
        raise TrialError(f"fleet {spec!r} names no device")
    canary = canary_names(devices)
    return [replace(d, group=CANARY_GROUP) if d.name in canary else d for d in devices]


def canary_names(devices: Sequence[PlannedDevice]) -> set[str]:
    """The canary: every profile and class covered by as few devices as the greedy rule finds."""
    missing = {("profile", d.profile.name) for d in devices}
    missing |= {("class", d.device_class) for d in devices}
    chosen: list[str] = []
    while missing:
        best = max(devices, key=lambda d: len(_covers(d) & missing))  # first one on a tie
        chosen.append(best.name)
        missing -= _covers(best)
    if len(chosen) == len(devices) > 1:
        chosen.pop()  # one device stays in the rest
    return set(chosen)


def _covers(device: PlannedDevice) -> set[tuple[str, str]]:
    return {("profile", device.profile.name), ("class", device.device_class)}
