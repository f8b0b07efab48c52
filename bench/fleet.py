"""Fleet fan-out: publish once, N agents ready -> bench/results/fleet.json.

    .venv/bin/python -m bench.fleet --data data [--quick]

A local mosquitto is started exactly as the broker tests start it (tools/devbroker.py:
passwords, the shipped ACL, persistence), N real agent daemons (agent.app.AgentApp over the real
MQTT link, one thread each, one process) connect to it, and the builder publishes one signed task
payload (a real `--auto` payload of bench.accuracy when one exists) with builder.fleet.publish.
Measured: time from the publish call to every agent reporting `ready` for the new version (and its
distribution over agents), time until the builder sees every device's result message, and bytes
on the wire per device from each agent's field-trial log (payload bytes + the MQTT overhead
estimate).

Training is replaced by the tests' stand-in applier (real signature check, decode and corpus
check; training returns at once): N agents sharing two CPU cores would measure CPU contention,
not delivery. The per-device time from payload to model is in bench.device.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agent.status import AgentState
from bench._common import BenchContext, log, write_json
from bench.accuracy import payload_path
from builder.fleet.publish import publish_payload
from builder.fleet.status import fleet_results
from plada.payload import decode_payload
from plada.signing import load_trusted_keys
from tools.devbroker import Broker, start_broker
from tools.fleet_harness import (
    FakeApplier,
    RunningAgent,
    admin_options,
    make_config,
    mqtt_section,
    start_agent,
    wait_until,
)

FLEET_SIZES = (1, 10, 50)
QUICK_FLEET_SIZES = (1, 10)


def _payload(ctx: BenchContext) -> tuple[bytes, str]:
    for task in ("fashion", *ctx.tasks):
        for budget in ("8KiB", "2KiB"):
            path = payload_path(ctx, task, budget, ctx.seeds[0])
            if path.exists():
                return path.read_bytes(), f"{task} {budget} auto payload (seed {ctx.seeds[0]})"
    raise FileNotFoundError(f"no auto payload under {ctx.work / 'payloads'}: run bench.accuracy")


def _start_fleet(ctx: BenchContext, tmp: Path, broker: Broker, size: int) -> list[RunningAgent]:
    """`size` real agent daemons (one thread each) with the stand-in applier, connected."""
    corpus = ctx.corpus()
    ids = [f"bench-{i:03d}" for i in range(size)]
    broker.add_users(ids)
    agents = []
    for device_id in ids:
        applier = FakeApplier(
            [ctx.public_key_path()], fingerprint=corpus.fingerprint, size=len(corpus)
        )
        config = make_config(
            tmp,
            device_id=device_id,
            public_key=ctx.public_key_path(),
            mqtt=mqtt_section(broker, device_id),
        )
        agents.append(start_agent(config, applier))
    wait_until(
        lambda: all(a.app.link.connected.is_set() for a in agents),  # type: ignore[attr-defined]
        timeout_s=60,
        what=f"{size} agents to connect",
    )
    return agents


def _ready_times(agents: list[RunningAgent], version: int, start: float) -> list[float]:
    """Seconds from `start` until each agent is ready with `version` (polled every 5 ms)."""
    ready_at: dict[str, float] = {}
    deadline = time.monotonic() + 120
    while len(ready_at) < len(agents):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ready_at)} of {len(agents)} agents ready after 120 s")
        now = time.monotonic()
        for agent in agents:
            status, device_id = agent.app.status, agent.app.config.device_id
            if (
                device_id not in ready_at
                and status.state == AgentState.READY
                and status.version == version
            ):
                ready_at[device_id] = now - start
        time.sleep(0.005)
    return sorted(ready_at.values())


def run_fleet(ctx: BenchContext, size: int, data: bytes) -> dict[str, Any]:
    payload = decode_payload(data, trusted_keys=load_trusted_keys([ctx.public_key_path()]))
    with tempfile.TemporaryDirectory(prefix=f"fleet-{size}-", dir=ctx.work) as tmp_name:
        broker = start_broker(Path(tmp_name) / "broker")
        agents: list[RunningAgent] = []
        try:
            agents = _start_fleet(ctx, Path(tmp_name), broker, size)
            options = admin_options(broker)
            start = time.monotonic()
            report = publish_payload(data, options=options, group="lab")
            published = time.monotonic() - start
            times = np.array(_ready_times(agents, payload.version, start))
            all_ready_s = time.monotonic() - start
            wait_until(
                lambda: len(fleet_results(options, payload.task)) >= size,
                timeout_s=60,
                what=f"{size} result messages",
            )
            results_s = time.monotonic() - start
            totals = [a.app.triallog.totals() for a in agents]
        finally:
            for agent in agents:
                agent.stop()
            broker.stop()
    wire = np.array([t["payload_bytes"] + t["overhead_bytes"] for t in totals])
    return {
        "agents": size,
        "broker": broker.kind,
        "payload_bytes": len(data),
        "messages": report.messages,
        "publish_acked_s": round(published, 4),
        "all_ready_s": round(all_ready_s, 4),
        "ready_median_s": round(float(np.median(times)), 4),
        "ready_first_s": round(float(times[0]), 4),
        "results_seen_by_builder_s": round(results_s, 4),
        "wire_bytes_per_device": {
            "mean": float(wire.mean()),
            "min": int(wire.min()),
            "max": int(wire.max()),
        },
        "payload_bytes_per_device": float(np.mean([t["payload_bytes"] for t in totals])),
        "overhead_bytes_per_device": float(np.mean([t["overhead_bytes"] for t in totals])),
        "messages_per_device": float(np.mean([t["messages"] for t in totals])),
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    sizes = QUICK_FLEET_SIZES if ctx.quick else FLEET_SIZES
    data, what = _payload(ctx)
    ctx.work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"payload": what, "runs": []}
    for size in sizes:
        row = run_fleet(ctx, size, data)
        log(
            f"fleet {size}: all ready {row['all_ready_s']:.3f} s, "
            f"{row['wire_bytes_per_device']['mean']:.0f} B/device"
        )
        out["runs"].append(row)
        write_json(ctx.out / "fleet.json", out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    run(BenchContext(data=args.data, quick=args.quick))
    return 0


if __name__ == "__main__":
    sys.exit(main())
