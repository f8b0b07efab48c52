"""Bring emulated links up and down by hand, and read their kernel counters (run as root).

    python -m tools.trial.links profiles                   # the named profiles and their sources
    python -m tools.trial.links up lora:2 ltem:1 --broker  # devices lora-1, lora-2, ltem-1
    python -m tools.trial.links up pi=satellite --drops --seed 7 --for 120
    python -m tools.trial.links status [--json]            # every trial, counters per device
    python -m tools.trial.links down [TRIAL_ID ... | --all]
    python -m tools.trial.links cleanup                    # leftovers of trials whose owner died

``up`` stays in the foreground (its namespaces live as long as it does) and prints one JSON line
with the namespaces and addresses once everything is up; it tears down on Ctrl-C, SIGTERM, after
``--for`` seconds, or when ``down`` removed its trial from another shell. Use the namespaces with
``ip netns exec <namespace> <command>``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.trial import registry, teardown
from tools.trial.broker import NamespaceBroker
from tools.trial.counters import LinkCounters, read_link_counters
from tools.trial.drops import DropPlayer, drop_plan
from tools.trial.errors import ProfileError, TrialError
from tools.trial.network import DeviceSpec, TrialNetwork
from tools.trial.profiles import DEFAULT_PROFILES, LinkProfile, get_profile, load_profiles


def parse_devices(specs: list[str], profiles: dict[str, LinkProfile]) -> list[DeviceSpec]:
    """``name=profile`` or ``profile:count`` (devices ``profile-1`` .. ``profile-count``)."""
    devices: list[DeviceSpec] = []
    for spec in specs:
        if "=" in spec:
            name, profile = spec.split("=", 1)
            devices.append(DeviceSpec(name, get_profile(profiles, profile)))
            continue
        profile, _, count = spec.partition(":")
        if count and not count.isdigit():
            raise TrialError(f"device spec {spec!r}: use name=profile or profile:count")
        link = get_profile(profiles, profile)
        devices += [DeviceSpec(f"{profile}-{i}", link) for i in range(1, int(count or 1) + 1)]
    return devices


def _counters(record: registry.TrialRecord) -> list[LinkCounters]:
    return [
        read_link_counters(
            device=d.name,
            profile=d.profile,
            device_ns=d.namespace,
            device_if=d.device_if,
            broker_ns=record.broker_namespace,
            broker_if=d.broker_if,
        )
        for d in record.devices
    ]


def cmd_profiles(args: argparse.Namespace) -> int:
    profiles = load_profiles(args.profiles)
    if args.json:
        print(json.dumps({n: p.model_dump() for n, p in profiles.items()}, indent=1))
        return 0
    for name, p in profiles.items():
        print(f"{name}: {p.description}")
        print(f"  down {p.down.model_dump()}  up {p.up.model_dump()}  drops {p.drops}")
        print("  source: " + " ".join(p.source.split()))
    return 0


def _wait_for_end(net: TrialNetwork, until: float | None) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    path = registry.record_path(net.trial_id)
    while not stop.wait(0.5):
        if until is not None and time.monotonic() >= until:
            return
        if not path.exists():
            return  # `links down` removed this trial from another shell


def cmd_up(args: argparse.Namespace) -> int:
    devices = parse_devices(args.devices, load_profiles(args.profiles))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="plada-trial-"))
    with TrialNetwork(devices) as net:
        broker = NamespaceBroker(net, workdir / "broker", verbose=args.verbose_broker)
        players: list[DropPlayer] = []
        try:
            if args.broker:
                broker.start()
            if args.drops:
                horizon = args.duration or 86_400.0
                for spec in devices:
                    if spec.profile.drops is not None:
                        plan = drop_plan(
                            spec.profile.drops, seed=args.seed, device=spec.name, horizon_s=horizon
                        )
                        setter = _link_setter(net, spec.name)
                        players.append(DropPlayer(spec.name, plan, setter).start())
            ready: dict[str, Any] = {"trial": net.trial_id, **net.record.model_dump()}
            if args.broker:
                ready["broker_urls"] = {d.name: broker.url_for(d.name) for d in devices}
            print(json.dumps(ready), flush=True)
            until = time.monotonic() + args.duration if args.duration else None
            _wait_for_end(net, until)
        finally:
            for player in players:
                player.stop()
            broker.stop()
    return 0


def _link_setter(net: TrialNetwork, device: str) -> Callable[[bool], None]:
    return lambda up: net.set_link(device, up=up)


def cmd_status(args: argparse.Namespace) -> int:
    trials = [(r.trial_id, registry.owner_alive(r), r) for r in registry.records()]
    readings = {tid: _counters(r) if alive else [] for tid, alive, r in trials}
    if args.json:
        rows = [
            {
                "trial": tid,
                "owner_alive": alive,
                "counters": [c.model_dump() for c in readings[tid]],
            }
            for tid, alive, _ in trials
        ]
        print(json.dumps(rows))
        return 0
    if not trials:
        print("no trials")
    for tid, alive, _ in trials:
        print(f"trial {tid}: {'running' if alive else 'owner dead (run cleanup)'}")
        for c in readings[tid]:
            print(
                f"  {c.device:<16} {c.profile:<10} down {c.down.wire_bytes:>10} B "
                f"lost {c.down.lost_packets:>5} | up {c.up.wire_bytes:>10} B "
                f"lost {c.up.lost_packets:>5} | connects {c.tcp.connects} "
                f"retrans {c.tcp.retrans_segs} link downs {c.link_downs}"
            )
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    records = {r.trial_id: r for r in registry.records()}
    wanted = list(records) if args.all else args.trials
    unknown = [t for t in wanted if t not in records]
    if unknown:
        raise TrialError(f"no trial {unknown[0]!r}; running: {', '.join(records) or 'none'}")
    for trial_id in wanted:
        teardown.teardown_record(records[trial_id])
        print(f"trial {trial_id}: torn down")
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    reaped = teardown.reap_dead_trials()
    print(f"reaped {len(reaped)} dead trial(s)" + (f": {', '.join(reaped)}" if reaped else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.trial.links",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES, help="profile TOML")
    sub = parser.add_subparsers(dest="command", required=True)
    prof = sub.add_parser("profiles", help="list the named link profiles")
    prof.add_argument("--json", action="store_true")
    up = sub.add_parser("up", help="bring devices up; tear down on exit")
    up.add_argument("devices", nargs="+", help="name=profile or profile:count")
    up.add_argument("--broker", action="store_true", help="run mosquitto in the broker namespace")
    up.add_argument("--verbose-broker", action="store_true", help="log every MQTT packet")
    up.add_argument("--drops", action="store_true", help="play each profile's link drops")
    up.add_argument("--seed", type=int, default=0, help="seed of the drop schedules")
    up.add_argument("--for", dest="duration", type=float, help="tear down after this many s")
    up.add_argument("--workdir", help="broker config and log (default /tmp/plada-trial-<id>)")
    status = sub.add_parser("status", help="trials and their kernel counters")
    status.add_argument("--json", action="store_true")
    down = sub.add_parser("down", help="tear trials down")
    down.add_argument("trials", nargs="*")
    down.add_argument("--all", action="store_true")
    sub.add_parser("cleanup", help="tear down trials whose owner died")
    return parser


_COMMANDS = {
    "profiles": cmd_profiles,
    "up": cmd_up,
    "status": cmd_status,
    "down": cmd_down,
    "cleanup": cmd_cleanup,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "down" and not (args.all or args.trials):
        print("down: name trials or pass --all", file=sys.stderr)
        return os.EX_USAGE
    try:
        return _COMMANDS[args.command](args)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return os.EX_CONFIG
    except TrialError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return os.EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())
