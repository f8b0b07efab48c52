"""Which devices a field trial runs: a name, a device class and a link profile each.

    plan_fleet("lora:3,nbiot:2", ["raspberry-pi-4", "x86-dev"], profiles)
    -> lora-1 (raspberry-pi-4), lora-2 (x86-dev), lora-3 (raspberry-pi-4), nbiot-1 (x86-dev), ...

Classes are dealt round-robin over the whole fleet in order, so every profile with two or more
devices carries more than one class: a difference between profiles is then not a difference
between encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tools.trial.errors import TrialError
from tools.trial.profiles import LinkProfile, get_profile

DEFAULT_FLEET = "lora:3,nbiot:2,ltem:3,satellite:2"  # 10 devices over 4 profiles (issue 19)


@dataclass(frozen=True)
class PlannedDevice:
    name: str
    device_class: str
    profile: LinkProfile


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
    return devices
