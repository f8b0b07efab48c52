"""Measure what each link profile really gives: rate each way, loss, round trips idle and under
load, and what a scheduled drop does. Real namespaces, mosquitto and MQTT clients; run as root.

    python -m tools.trial.measure_links [--out bench/results/trial_links.json] [--profile lora ...]

Per profile: 10 idle pings; an MQTT upload and a download of about twelve seconds of traffic at the
profile's rate (QoS 1, random bytes), each with a ping running beside it (the round trip under
load: the queue the transfer builds); 60 more pings where the profile has loss (the loss fraction
comes from the nft counters over the whole run); and, where it has drops, one drop of the
profile's length under a 10 Hz ping and a connected subscriber (the outage ping saw, and whether
the TCP connection survived it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tools.trial.broker import NamespaceBroker
from tools.trial.clients import Pinger, Subscriber, longest_silence_s, publish, rtt_stats
from tools.trial.counters import DirectionCounters
from tools.trial.drops import DropPlayer, DropWindow, drop_plan
from tools.trial.kernel import run
from tools.trial.network import BROKER, DeviceSpec, TrialNetwork
from tools.trial.profiles import DEFAULT_PROFILES, LinkProfile, load_profiles

DEVICE = "dev"
TRANSFER_S = 12.0
CLEAN_BYTES = 2_000_000  # an unshaped veth: bounded by the Python client, not the link
PING_FRAME_BITS = 98 * 8  # one echo request frame (84 IP bytes + Ethernet)


def _transfer_bytes(rate_kbit: float | None) -> tuple[int, int]:
    """(message size, count) for about TRANSFER_S seconds at the rate."""
    total = CLEAN_BYTES if rate_kbit is None else int(rate_kbit * 1000 / 8 * TRANSFER_S)
    count = 4 if total < 40_000 else 10
    return max(500, total // count), count


def _ping_interval(rate_kbit: float | None) -> float:
    """Pings beside a transfer take at most 5 % of the link."""
    if rate_kbit is None:
        return 0.2
    return round(max(0.2, PING_FRAME_BITS * 20 / (rate_kbit * 1000)), 2)


def _direction(
    counted: DirectionCounters, payload: int, seconds: float, rate_kbit: float | None
) -> dict[str, Any]:
    goodput = payload * 8 / seconds / 1000
    wire = counted.wire_bytes * 8 / seconds / 1000
    return {
        "payload_bytes": payload,
        "seconds": round(seconds, 3),
        "goodput_kbit": round(goodput, 2),
        "wire_kbit": round(wire, 2),
        "wire_to_rate": round(wire / rate_kbit, 3) if rate_kbit else None,
        "wire_bytes": counted.wire_bytes,
        "wire_packets": counted.wire_packets,
        "lost_packets": counted.lost_packets,
        "queue_drops": counted.queue_drops,
    }


def _upload(net: TrialNetwork, broker: NamespaceBroker, profile: LinkProfile) -> dict[str, Any]:
    size, count = _transfer_bytes(profile.up.rate_kbit)
    pinger = Pinger(
        net, DEVICE, net.broker_ip(DEVICE), interval_s=_ping_interval(profile.up.rate_kbit)
    )
    before = net.counters(DEVICE)
    sent = publish(net, DEVICE, broker.url_for(DEVICE), "bench/up", size=size, count=count)
    spent = net.counters(DEVICE).minus(before)
    loaded = rtt_stats(pinger.stop())
    result = _direction(spent.up, sent["payload_bytes"], sent["seconds"], profile.up.rate_kbit)
    return {**result, "rtt_loaded_ms": loaded, "tcp_retrans_segs": spent.tcp.retrans_segs}


def _download(net: TrialNetwork, broker: NamespaceBroker, profile: LinkProfile) -> dict[str, Any]:
    size, count = _transfer_bytes(profile.down.rate_kbit)
    sub = Subscriber(net, DEVICE, broker.url_for(DEVICE), "bench/down", count=count, timeout_s=180)
    interval = _ping_interval(profile.down.rate_kbit)
    pinger = Pinger(net, DEVICE, net.broker_ip(DEVICE), interval_s=interval)
    before = net.counters(DEVICE)
    sent = publish(net, BROKER, broker.local_url, "bench/down", size=size, count=count)
    got = sub.result(timeout_s=240)
    spent = net.counters(DEVICE).minus(before)
    loaded = rtt_stats(pinger.stop())
    seconds = (got["last_at"] or time.time()) - sent["connected_at"]
    result = _direction(spent.down, got["payload_bytes"], seconds, profile.down.rate_kbit)
    return {**result, "rtt_loaded_ms": loaded, "complete": got["ok"]}


def _drop(net: TrialNetwork, broker: NamespaceBroker, profile: LinkProfile) -> dict[str, Any]:
    assert profile.drops is not None  # noqa: S101 (callers check)
    sub = Subscriber(
        net, DEVICE, broker.url_for(DEVICE), "bench/drop", count=1, timeout_s=60, keepalive_s=60
    )
    before = net.counters(DEVICE)
    pinger = Pinger(net, DEVICE, net.broker_ip(DEVICE), interval_s=0.1)
    window = DropWindow(start_s=1.0, duration_s=profile.drops.duration_s)
    events = DropPlayer(DEVICE, [window], lambda up: net.set_link(DEVICE, up=up)).start().wait()
    time.sleep(3.0)
    replies = pinger.stop()
    publish(net, BROKER, broker.local_url, "bench/drop", size=100, count=1)
    got = sub.result()
    spent = net.counters(DEVICE).minus(before)
    plan = drop_plan(profile.drops, seed=0, device=DEVICE, horizon_s=600)
    return {
        "drop_s": round(events[0].up_at - events[0].down_at, 3),
        "ping_longest_silence_s": longest_silence_s(replies),
        "link_downs": spent.link_downs,
        "tcp_reconnects": spent.tcp.connects,
        "message_after_drop_delivered": got["ok"],
        "plan_seed0_10min": {
            "drops": len(plan),
            "down_fraction": round(sum(w.duration_s for w in plan) / 600, 3),
            "starts_s": [w.start_s for w in plan],
        },
    }


def measure_profile(profile: LinkProfile, folder: Path) -> dict[str, Any]:
    with TrialNetwork([DeviceSpec(DEVICE, profile)]) as net:
        with NamespaceBroker(net, folder / profile.name) as broker:
            start = net.counters(DEVICE)
            idle = Pinger(net, DEVICE, net.broker_ip(DEVICE), interval_s=0.2)
            time.sleep(2.1)
            result: dict[str, Any] = {
                "configured": profile.model_dump(exclude={"source", "description"}),
                "rtt_idle_ms": rtt_stats(idle.stop()),
                "up": _upload(net, broker, profile),
                "down": _download(net, broker, profile),
            }
            if profile.down.loss_percent or profile.up.loss_percent:
                loss_pinger = Pinger(net, DEVICE, net.broker_ip(DEVICE), interval_s=0.2)
                time.sleep(12.0)
                loss_pinger.stop()
            total = net.counters(DEVICE).minus(start)
            result["loss_measured"] = {
                name: {
                    "wire_packets": d.wire_packets,
                    "lost_packets": d.lost_packets,
                    "fraction": round(d.lost_packets / d.wire_packets, 4) if d.wire_packets else 0,
                }
                for name, d in (("down", total.down), ("up", total.up))
            }
            if profile.drops is not None:
                result["drop"] = _drop(net, broker, profile)
    return result


def _machine() -> dict[str, Any]:
    return {
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg": Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3],
        "iproute2": run(["ip", "-V"]).strip(),
        "nft": run(["nft", "-v"]).strip(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES)
    parser.add_argument("--profile", action="append", help="only these (default: all)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/trial_links.json"))
    args = parser.parse_args(argv)
    profiles = load_profiles(args.profiles)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear down on SIGTERM too
    chosen = args.profile or list(profiles)
    report: dict[str, Any] = {"machine_before": _machine(), "started_at": time.time()}
    results = {}
    with tempfile.TemporaryDirectory(prefix="plada-measure-") as tmp:
        for name in chosen:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            results[name] = measure_profile(profiles[name], Path(tmp))
            print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    report |= {"profiles": results, "machine_after": _machine(), "finished_at": time.time()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
