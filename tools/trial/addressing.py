"""Private addresses for trial links that cannot collide with the host's own networks.

Device ``i`` gets the ``i``-th /30 of a /16 base: the broker end is ``.1``, the device end ``.2``.
The namespaces have no default route, so nothing but the peer is reachable from either end; the base
is still chosen outside every network the host has an address or route in, so an address printed
by a trial never means something else on this machine.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from tools.trial.errors import KernelError
from tools.trial.kernel import run_json

CANDIDATES = tuple(
    ipaddress.IPv4Network(n)
    for n in ("10.201.0.0/16", "10.202.0.0/16", "10.203.0.0/16", "172.29.0.0/16", "172.30.0.0/16")
)
MAX_DEVICES = 250
PREFIX = 30


@dataclass(frozen=True)
class LinkAddresses:
    broker: ipaddress.IPv4Address
    device: ipaddress.IPv4Address
    network: ipaddress.IPv4Network

    def broker_cidr(self) -> str:
        return f"{self.broker}/{PREFIX}"

    def device_cidr(self) -> str:
        return f"{self.device}/{PREFIX}"


def host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host (the root namespace) has an address or a route in."""
    nets: list[ipaddress.IPv4Network] = []
    for link in run_json(["ip", "-j", "-4", "addr", "show"]):
        for info in link.get("addr_info", []):
            nets.append(ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False))
    for route in run_json(["ip", "-j", "-4", "route", "show", "table", "all"]):
        nets.extend(_route_network(route))
    return nets


def _route_network(route: dict[str, Any]) -> list[ipaddress.IPv4Network]:
    dst = route.get("dst", "")
    if dst in ("", "default"):
        return []  # a default route is not a network the host sits in
    try:
        return [ipaddress.IPv4Network(dst, strict=False)]
    except ValueError:
        return []


def choose_base(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    """The first candidate /16 that overlaps none of ``taken``."""
    for candidate in CANDIDATES:
        if not any(candidate.overlaps(net) for net in taken):
            return candidate
    raise KernelError(
        "every candidate trial network overlaps a host network: "
        + ", ".join(str(c) for c in CANDIDATES)
    )


def link_addresses(base: ipaddress.IPv4Network, index: int) -> LinkAddresses:
    """The /30 of device ``index`` inside ``base``."""
    if not 0 <= index < MAX_DEVICES:
        raise ValueError(f"device index {index} outside 0..{MAX_DEVICES - 1}")
    first = base.network_address + index * 2 ** (32 - PREFIX)
    network = ipaddress.IPv4Network(f"{first}/{PREFIX}")
    return LinkAddresses(broker=first + 1, device=first + 2, network=network)
