"""What the kernel counted on one device's link, per direction, and its TCP stack's troubles.

Wire bytes are the device-side veth's interface statistics: ``rx`` is everything the broker end put
on the link towards the device (lost packets included: loss drops them on arrival), ``tx``
everything the device put on it. They are frame bytes (Ethernet 14 + IP + TCP + MQTT), one frame
per segment because the trial sets ``gso_max_segs 1`` on both ends. ``lost`` is the nft loss rule's
counter, ``queue_drops`` the sending tbf's drops (those never reached the wire). ``connects`` counts
the device's TCP SYNs that reached the broker end (nft); the other TCP numbers come from the device
namespace's ``/proc/net/snmp`` (``RetransSegs``: segments the device sent again; loopback
connections, such as paho's internal socket pair, count there too).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from tools.trial.errors import KernelError
from tools.trial.kernel import ns_exec, run, run_json


class DirectionCounters(BaseModel):
    model_config = ConfigDict(frozen=True)

    wire_bytes: int  # frames that crossed the link (Ethernet header included)
    wire_packets: int
    lost_packets: int  # dropped on arrival by the loss rule
    lost_bytes: int  # IP bytes of those (nft counts from the network header)
    queue_drops: int  # dropped by the sender's tbf before the wire

    @property
    def delivered_packets(self) -> int:
        return self.wire_packets - self.lost_packets


class TcpCounters(BaseModel):
    model_config = ConfigDict(frozen=True)

    connects: int  # SYNs from the device that reached the broker end: connects and reconnects
    active_opens: int  # connections opened in the device namespace (loopback ones included)
    out_segs: int
    retrans_segs: int
    in_errs: int


class LinkCounters(BaseModel):
    model_config = ConfigDict(frozen=True)

    device: str
    profile: str
    down: DirectionCounters  # broker -> device
    up: DirectionCounters  # device -> broker
    tcp: TcpCounters
    link_downs: int  # times the device end lost carrier (sysfs carrier_down_count): link drops

    def minus(self, before: LinkCounters) -> LinkCounters:
        """The difference to an earlier reading (what one measurement window cost)."""
        return LinkCounters(
            device=self.device,
            profile=self.profile,
            down=_diff(self.down, before.down, DirectionCounters),
            up=_diff(self.up, before.up, DirectionCounters),
            tcp=_diff(self.tcp, before.tcp, TcpCounters),
            link_downs=self.link_downs - before.link_downs,
        )


def _diff(now: Any, before: Any, kind: Any) -> Any:
    return kind(**{k: getattr(now, k) - getattr(before, k) for k in kind.model_fields})


def interface_stats(namespace: str, interface: str) -> dict[str, Any]:
    """``ip -s -j link show`` of one interface (``stats64``)."""
    found = run_json(["ip", "-n", namespace, "-s", "-j", "link", "show", "dev", interface])
    if not found:
        raise KernelError(f"{namespace}: no interface {interface}")
    entry: dict[str, Any] = found[0]
    return entry


def link_downs(namespace: str, interface: str) -> int:
    """sysfs ``carrier_down_count`` (``ip netns exec`` mounts the namespace's own /sys)."""
    path = f"/sys/class/net/{interface}/carrier_down_count"
    return int(run(ns_exec(namespace, ["cat", path])).strip())


def nft_counters(namespace: str) -> dict[str, tuple[int, int]]:
    """Named nft counters of a namespace: name -> (packets, bytes)."""
    listing = run_json(ns_exec(namespace, ["nft", "-j", "list", "counters"]))
    counters: dict[str, tuple[int, int]] = {}
    for item in listing.get("nftables", []) if isinstance(listing, dict) else []:
        counter = item.get("counter")
        if counter:
            counters[counter["name"]] = (int(counter["packets"]), int(counter["bytes"]))
    return counters


def tbf_drops(namespace: str, interface: str) -> int:
    qdiscs = run_json(["tc", "-n", namespace, "-s", "-j", "qdisc", "show", "dev", interface])
    return sum(int(q.get("drops", 0)) for q in qdiscs if q.get("kind") == "tbf")


def tcp_counters(namespace: str, *, connects: int) -> TcpCounters:
    """The ``Tcp:`` lines of the namespace's /proc/net/snmp."""
    lines = [
        line.split()
        for line in run(ns_exec(namespace, ["cat", "/proc/net/snmp"])).splitlines()
        if line.startswith("Tcp:")
    ]
    if len(lines) != 2:
        raise KernelError(f"{namespace}: /proc/net/snmp has no Tcp: table")
    values = dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))
    return TcpCounters(
        connects=connects,
        active_opens=values["ActiveOpens"],
        out_segs=values["OutSegs"],
        retrans_segs=values["RetransSegs"],
        in_errs=values["InErrs"],
    )


def read_link_counters(
    *,
    device: str,
    profile: str,
    device_ns: str,
    device_if: str,
    broker_ns: str,
    broker_if: str,
) -> LinkCounters:
    link = interface_stats(device_ns, device_if)
    stats = link["stats64"]
    at_device = nft_counters(device_ns)
    at_broker = nft_counters(broker_ns)
    lost_down = at_device.get("down_lost", (0, 0))
    lost_up = at_broker.get(f"up_{broker_if}_lost", (0, 0))
    return LinkCounters(
        device=device,
        profile=profile,
        down=DirectionCounters(
            wire_bytes=int(stats["rx"]["bytes"]),
            wire_packets=int(stats["rx"]["packets"]),
            lost_packets=lost_down[0],
            lost_bytes=lost_down[1],
            queue_drops=tbf_drops(broker_ns, broker_if),
        ),
        up=DirectionCounters(
            wire_bytes=int(stats["tx"]["bytes"]),
            wire_packets=int(stats["tx"]["packets"]),
            lost_packets=lost_up[0],
            lost_bytes=lost_up[1],
            queue_drops=tbf_drops(device_ns, device_if),
        ),
        tcp=tcp_counters(device_ns, connects=at_broker.get(f"up_{broker_if}_syn", (0, 0))[0]),
        link_downs=link_downs(device_ns, device_if),
    )
