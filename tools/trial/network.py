"""TrialNetwork: a broker namespace and one namespace per device, joined by shaped veth pairs.

    with TrialNetwork([DeviceSpec("pi-1", profiles["lora"])]) as net:
        net.popen("broker", ["mosquitto", "-c", conf])
        net.popen("pi-1", ["plada-agent", "run", ...])
        net.counters("pi-1")          # kernel counters of that link
        net.set_link("pi-1", up=False)

Bring-up, in order: check root and tools, reap dead trials, prove tbf and nft numgen work in a
scratch namespace, choose a private network, write the trial record, start the guardian, then
create the namespaces and links. The record comes before the first namespace, so a crash at any
point leaves something the guardian (or the next trial's reaper) can find. IPv6 is off inside the
namespaces: its neighbour discovery would add traffic nobody asked for to the counters.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from tools.trial import kernel, registry, teardown
from tools.trial.addressing import MAX_DEVICES, PREFIX, choose_base, host_networks, link_addresses
from tools.trial.counters import LinkCounters, read_link_counters
from tools.trial.errors import TrialStateError
from tools.trial.guardian import release_guardian, start_guardian
from tools.trial.profiles import LinkProfile
from tools.trial.shaping import LINK_MTU, loss_table, tbf_args

BROKER = "broker"
DEVICE_IF = "wan0"
_DEVICE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    profile: LinkProfile


class TrialNetwork:
    def __init__(
        self,
        devices: Sequence[DeviceSpec],
        *,
        guardian: bool = True,
        guardian_log: Path | None = None,
    ) -> None:
        names = [d.name for d in devices]
        bad = [n for n in names if n == BROKER or not _DEVICE_NAME.match(n)]
        if bad:
            raise TrialStateError(
                f"device name {bad[0]!r}: use [a-z0-9-], 1-24 chars, not 'broker'"
            )
        if len(set(names)) != len(names):
            raise TrialStateError(f"device names repeat: {sorted(names)}")
        if not 1 <= len(devices) <= MAX_DEVICES:
            raise TrialStateError(f"{len(devices)} devices: a trial has 1..{MAX_DEVICES}")
        self.devices = list(devices)
        self.profiles = {d.name: d.profile for d in devices}
        self.trial_id = registry.new_trial_id()
        self._use_guardian = guardian
        self._guardian_log = guardian_log
        self._guardian: subprocess.Popen[bytes] | None = None
        self._record: registry.TrialRecord | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def up(self) -> registry.TrialRecord:
        kernel.require_root_and_tools()
        teardown.reap_dead_trials()
        kernel.probe_features(registry.namespace_name(self.trial_id, "probe"))
        record = self._plan()
        registry.save(record)
        self._record = record
        try:
            if self._use_guardian:
                self._guardian = start_guardian(self.trial_id, log_path=self._guardian_log)
                record.guardian_pid = self._guardian.pid
                registry.save(record)
            self._make_namespace(record.broker_namespace)
            for device in record.devices:
                self._make_link(record, device)
        except BaseException:
            self.down()
            raise
        return record

    def down(self) -> None:
        if self._record is not None:
            teardown.teardown_record(self._record)
            self._record = None
        if self._guardian is not None:
            release_guardian(self._guardian)
            self._guardian = None

    def __enter__(self) -> TrialNetwork:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    @property
    def record(self) -> registry.TrialRecord:
        if self._record is None:
            raise TrialStateError(f"trial {self.trial_id} is not up")
        return self._record

    # -- building -------------------------------------------------------------------------------
    def _plan(self) -> registry.TrialRecord:
        base = choose_base(host_networks())
        devices = []
        for index, spec in enumerate(self.devices):
            addrs = link_addresses(base, index)
            devices.append(
                registry.DeviceRecord(
                    name=spec.name,
                    index=index,
                    profile=spec.profile.name,
                    namespace=registry.namespace_name(self.trial_id, f"d-{spec.name}"),
                    broker_if=f"d{index}",
                    device_if=DEVICE_IF,
                    broker_ip=str(addrs.broker),
                    device_ip=str(addrs.device),
                )
            )
        return registry.TrialRecord(
            trial_id=self.trial_id,
            owner_pid=os.getpid(),
            owner_start=_own_start(),
            created_at=time.time(),
            base_network=str(base),
            broker_namespace=registry.namespace_name(self.trial_id, BROKER),
            devices=devices,
        )

    @staticmethod
    def _make_namespace(namespace: str) -> None:
        kernel.run(["ip", "netns", "add", namespace])
        no_ipv6 = ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
        kernel.run(kernel.ns_exec(namespace, ["sysctl", "-q", "-w", *no_ipv6]))
        kernel.ip(namespace, "link", "set", "lo", "up")

    def _make_link(self, record: registry.TrialRecord, device: registry.DeviceRecord) -> None:
        broker_ns, ns = record.broker_namespace, device.namespace
        profile = self.profiles[device.name]
        self._make_namespace(ns)
        peer = ("peer", "name", device.device_if, "netns", ns)
        kernel.ip(broker_ns, "link", "add", device.broker_if, "type", "veth", *peer)
        ends = (
            (broker_ns, device.broker_if, device.broker_ip),
            (ns, device.device_if, device.device_ip),
        )
        for namespace, interface, address in ends:
            # One frame per segment (gso_max_segs 1), so interface statistics count wire frames;
            # the MTU is set before tbf computes its sizes from it.
            settings = ("mtu", str(LINK_MTU), "gso_max_segs", "1", "up")
            kernel.ip(namespace, "link", "set", interface, *settings)
            kernel.ip(namespace, "addr", "add", f"{address}/{PREFIX}", "dev", interface)
        for namespace, interface, direction in (
            (broker_ns, device.broker_if, profile.down),
            (ns, device.device_if, profile.up),
        ):
            args = tbf_args(direction)
            if args is not None:
                kernel.tc(namespace, "qdisc", "replace", "dev", interface, "root", *args)
        kernel.nft_script(
            ns,
            loss_table(
                table="plada_link",
                device=device.device_if,
                counter_prefix="down",
                direction=profile.down,
            ),
        )
        kernel.nft_script(
            broker_ns,
            loss_table(
                table=f"plada_link_{device.broker_if}",
                device=device.broker_if,
                counter_prefix=f"up_{device.broker_if}",
                direction=profile.up,
            ),
        )

    # -- using ----------------------------------------------------------------------------------
    def namespace(self, where: str) -> str:
        """The namespace of ``"broker"`` or of a device name."""
        if where == BROKER:
            return self.record.broker_namespace
        return self.record.device(where).namespace

    def argv(self, where: str, argv: Sequence[str]) -> list[str]:
        return kernel.ns_exec(self.namespace(where), argv)

    def popen(self, where: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside a namespace (``ip netns exec`` execs it: same pid)."""
        return subprocess.Popen(self.argv(where, argv), **kwargs)

    def run(self, where: str, argv: Sequence[str], *, timeout_s: float = 60.0) -> str:
        return kernel.run(self.argv(where, argv), timeout_s=timeout_s)

    def broker_ip(self, device: str) -> str:
        """The broker's address as ``device`` reaches it."""
        return self.record.device(device).broker_ip

    def device_ip(self, device: str) -> str:
        return self.record.device(device).device_ip

    def counters(self, device: str) -> LinkCounters:
        rec = self.record.device(device)
        return read_link_counters(
            device=rec.name,
            profile=rec.profile,
            device_ns=rec.namespace,
            device_if=rec.device_if,
            broker_ns=self.record.broker_namespace,
            broker_if=rec.broker_if,
        )

    def set_link(self, device: str, *, up: bool) -> None:
        """Carrier on or off, at the device end (both ends see the carrier go)."""
        rec = self.record.device(device)
        kernel.run(
            ["ip", "-n", rec.namespace, "link", "set", rec.device_if, "up" if up else "down"]
        )

    def drop(self, device: str, seconds: float) -> None:
        """Take the link down for ``seconds`` (blocking), then up again."""
        self.set_link(device, up=False)
        try:
            time.sleep(seconds)
        finally:
            self.set_link(device, up=True)


def _own_start() -> int:
    start = registry.process_start(os.getpid())
    if start is None:
        raise TrialStateError("cannot read this process's start time from /proc")
    return start
