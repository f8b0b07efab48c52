"""Issue 19 item 4, measured: is a reconnecting device sent chunks it already holds, and does a task
published while a device is offline reach it? Run as root.

    python -m tools.trial.measure_resume [--profile lora] [--out bench/results/trial_resume.json]

Per scenario a fresh device in a namespace on a slow profile: the real ``plada-agent run`` daemon.
A real mosquitto in the broker namespace logs every packet; the task is published by ``plada-build
publish --max-chunk-bytes 1024`` from the broker namespace. Scenarios, each under MQTT 5 and 3.1.1:

- ``long-drop``: once half of the chunks are on the device's disk, the link goes down for longer
  than the keepalive allows (the broker and the device both drop the connection);
- ``short-drop``: a drop shorter than the keepalive at the same point (TCP rides it out);
- ``offline``: the device is stopped (SIGTERM), the task is published, the device starts again;
- ``ready-reconnect``: the device holds the whole task, then the link drops and it reconnects.

What is counted: every PUBLISH the broker sent to the device (its log: topic, dup and retain
flags), split at each reconnect; the chunks on the device's disk when the link went down; every
message the device received (its trial log); the bytes on the wire (kernel counters).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from plada.chunks import DEFAULT_MAX_CHUNK_BYTES
from plada.payload import payload_digest
from plada.topics import TopicScheme
from tools.tiny.device import TinyDevice
from tools.trial import resume_device as dev
from tools.trial.broker import NamespaceBroker, mosquitto_version
from tools.trial.clients import REPO
from tools.trial.counters import tcp_counters
from tools.trial.drops import DropPlayer, DropWindow
from tools.trial.network import BROKER, DeviceSpec, TrialNetwork
from tools.trial.profiles import get_profile, load_profiles
from tools.trial.resume_report import analyse, task_topics

DEVICE = "pi"
MAX_CHUNK_BYTES = 1024
SCENARIOS = ("long-drop", "short-drop", "offline", "ready-reconnect", "ready-reconnect-whole")
WHOLE = DEFAULT_MAX_CHUNK_BYTES  # the whole payload in one message (plada-build's default)
PROTOCOLS = ("5", "3.1.1")


@dataclass(frozen=True)
class Settings:
    keepalive_s: int  # the device's MQTT keepalive
    long_drop_s: float  # outlasts the keepalive on both ends: the connection is re-made
    short_drop_s: float  # shorter than the keepalive: TCP rides it out


def _wait(predicate: Any, *, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")


def _publish(
    net: TrialNetwork, broker: NamespaceBroker, payload: Path, group: str, max_chunk_bytes: int
) -> None:
    """``plada-build publish`` from inside the broker namespace (loopback: no link between)."""
    argv = [sys.executable, "-m", "builder", "publish", str(payload), "--broker"]
    argv += [broker.local_url, "--group", group, "--max-chunk-bytes", str(max_chunk_bytes)]
    net.run(BROKER, ["env", f"PYTHONPATH={REPO}", *argv], timeout_s=120)


def _connections(broker: NamespaceBroker, client_id: str) -> int:
    return broker.log_text().count(f" as {client_id} ")


def _disconnects(broker: NamespaceBroker, client_id: str) -> int:
    log = broker.log_text()
    return log.count(f"Client {client_id} disconnected") + log.count(
        f"Client {client_id} closed its connection"
    )


def _make_device(
    net: TrialNetwork,
    broker: NamespaceBroker,
    tiny: TinyDevice,
    folder: Path,
    *,
    protocol: str,
    index: int,
    keepalive_s: int,
) -> dev.AgentDevice:
    url, group = broker.url_for(DEVICE), f"s{index}"
    setup = dev.write_agent_config(
        tiny,
        folder,
        device_id=f"pi-{index}",
        group=group,
        broker_url=url,
        protocol=protocol,
        keepalive_s=keepalive_s,
    )
    return dev.AgentDevice(net, DEVICE, setup)


def _drop(net: TrialNetwork, seconds: float) -> None:
    DropPlayer(
        DEVICE, [DropWindow(0.0, seconds)], lambda up: net.set_link(DEVICE, up=up)
    ).start().wait()


def _held_topics(device: dev.AgentDevice, payload_id: str, group: str, task: str) -> list[str]:
    """The task topics whose message is on the device's disk right now."""
    scheme = TopicScheme()
    held = [scheme.task_chunk(group, i, task) for i in device.held_indices(payload_id)]
    manifest = scheme.task_manifest(group, task)
    return [manifest, *held] if device.holds_manifest(payload_id) else held


def _play(
    kind: str,
    net: TrialNetwork,
    broker: NamespaceBroker,
    device: dev.AgentDevice,
    publish: Any,
    *,
    payload_id: str,
    group: str,
    task: str,
    needed: dict[str, int],
    settings: Settings,
) -> tuple[list[str], float]:
    """Publish and disturb the link as the scenario says; (topics held at the drop, drop s)."""
    if kind == "offline":
        device.stop()
        # Its DISCONNECT may still wait in the slow link's queue: publishing before the broker
        # has seen it sends the task to a device on its way out (unacked, so sent again later).
        _wait(lambda: _disconnects(broker, device.client_id) >= 1, timeout_s=60, what="offline")
        publish()
        device.start()
        return [], 0.0
    publish()
    if kind.startswith("ready-reconnect"):
        _wait(lambda: device.installed() == payload_id, timeout_s=240, what="the task")
        time.sleep(1.0)
        _drop(net, settings.long_drop_s)
        _wait(lambda: _connections(broker, device.client_id) >= 2, timeout_s=60, what="reconnect")
        time.sleep(5.0)  # whatever the broker re-sends after the reconnect
        return sorted(needed), settings.long_drop_s
    half = (len(needed) - 1) // 2
    _wait(lambda: len(device.held_indices(payload_id)) >= half, timeout_s=120, what="half")
    held = _held_topics(device, payload_id, group, task)
    seconds = settings.long_drop_s if kind == "long-drop" else settings.short_drop_s
    _drop(net, seconds)
    return held, seconds


def run_scenario(
    net: TrialNetwork,
    broker: NamespaceBroker,
    tiny: TinyDevice,
    folder: Path,
    *,
    kind: str,
    protocol: str,
    index: int,
    settings: Settings,
) -> dict[str, Any]:
    folder, group = folder / f"s{index}", f"s{index}"
    device = _make_device(
        net,
        broker,
        tiny,
        folder,
        protocol=protocol,
        index=index,
        keepalive_s=settings.keepalive_s,
    )
    data = dev.task_payload(tiny, version=1, seed=index)
    (folder / "task.plada").write_bytes(data)
    payload_id = payload_digest(data)
    max_chunk = WHOLE if kind.endswith("-whole") else MAX_CHUNK_BYTES
    task = dev.TASK  # plada-build publish sends it on the task's own topics
    needed = task_topics(group, data, max_chunk_bytes=max_chunk, task=task)
    log_offset = len(broker.log_text())
    device.start()
    _wait(lambda: _connections(broker, device.client_id) >= 1, timeout_s=60, what="the device")
    _wait(device.subscribed, timeout_s=60, what="the device's subscriptions")
    time.sleep(1.0)  # its status and availability go out first
    before = net.counters(DEVICE)
    broker_before = tcp_counters(net.namespace(BROKER), connects=0)
    started = time.time()
    held, drop_s = _play(
        kind,
        net,
        broker,
        device,
        lambda: _publish(net, broker, folder / "task.plada", group, max_chunk),
        payload_id=payload_id,
        group=group,
        task=task,
        needed=needed,
        settings=settings,
    )
    _wait(lambda: device.installed() == payload_id, timeout_s=240, what="the task")
    ready_s = time.time() - started
    time.sleep(1.0)  # let the last PUBACKs and status cross the link
    spent = net.counters(DEVICE).minus(before)
    broker_after = tcp_counters(net.namespace(BROKER), connects=0)
    device.stop()
    result = analyse(
        kind=kind,
        protocol=protocol,
        drop_s=drop_s,
        needed=needed,
        payload_bytes=len(data),
        group=group,
        client_id=device.client_id,
        broker_log=broker.log_text()[log_offset:],
        agent_log=device.log_text(),
        held_topics=held,
        received=device.received(),
        counters=spent,
        ready_s=ready_s,
        task=task,
    )
    result["summary"] = {"device": "agent", **result["summary"]}
    # the broker's resends on the lossy downlink (its namespace serves only this device)
    result["broker_tcp_retrans_segs"] = broker_after.retrans_segs - broker_before.retrans_segs
    result["broker_tcp_out_segs"] = broker_after.out_segs - broker_before.out_segs
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="lora", help="link profile of the device")
    parser.add_argument("--num-images", type=int, default=24_000, help="tiny corpus size")
    parser.add_argument("--keepalive", type=int, default=20, help="device MQTT keepalive, s")
    parser.add_argument("--long-drop-s", type=float, default=45.0, help="> 2 x keepalive")
    parser.add_argument("--short-drop-s", type=float, default=2.0, help="< keepalive")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS)
    parser.add_argument("--protocol", action="append", choices=PROTOCOLS)
    parser.add_argument(
        "--workdir", type=Path, help="keep logs and state here (default: a temp dir)"
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/trial_resume.json"))
    args = parser.parse_args(argv)
    profile = get_profile(load_profiles(), args.profile)
    settings = Settings(args.keepalive, args.long_drop_s, args.short_drop_s)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # tear down on SIGTERM too
    loadavg = Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]
    results = []
    with tempfile.TemporaryDirectory(prefix="plada-resume-") as tmp:
        folder = args.workdir or Path(tmp)
        tiny = dev.make_tiny_device(folder / "tiny", num_images=args.num_images)
        with TrialNetwork([DeviceSpec(DEVICE, profile)]) as net:
            with NamespaceBroker(net, folder / "broker", verbose=True) as broker:
                plan = [
                    (protocol, kind)
                    for protocol in args.protocol or PROTOCOLS
                    for kind in args.scenario or SCENARIOS
                ]
                for index, (protocol, kind) in enumerate(plan, start=1):
                    print(f"agent: {kind} over MQTT {protocol}", file=sys.stderr, flush=True)
                    result = run_scenario(
                        net,
                        broker,
                        tiny,
                        folder,
                        kind=kind,
                        protocol=protocol,
                        index=index,
                        settings=settings,
                    )
                    print(json.dumps(result["summary"]), file=sys.stderr, flush=True)
                    results.append(result)
    report = {
        "profile": profile.model_dump(exclude={"source"}),
        "max_chunk_bytes": {"chunked": MAX_CHUNK_BYTES, "whole": WHOLE},
        "settings": asdict(settings),
        "mosquitto": mosquitto_version(),
        "loadavg_before": loadavg,
        "loadavg_after": Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3],
        "scenarios": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
