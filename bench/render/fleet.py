"""### Fleet: one publish to N agent daemons on a local mosquitto, at 100 to 1,000 agents."""

from __future__ import annotations

from collections.abc import Mapping

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.fleet import FleetResults, FleetRun


def _s(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _row(r: FleetRun) -> list[str]:
    b, c = r.broker_usage, r.client_usage
    return [
        f"{r.agents:,}",
        f"{r.payload_bytes:,}",
        str(r.messages),
        _s(r.publish_acked_s),
        _s(r.ready_median_s),
        _s(r.ready_p90_s),
        _s(r.all_ready_s) if r.all_ready_s is not None else f"n/a ({r.lost} lost)",
        str(r.lost),
        f"{r.wire_bytes_per_device.mean:,.0f}",
        f"{b.cpu_s:.2f} ({b.cpu_percent:.0f} %)",
        f"{r.connect.broker_rss_mb:.1f} / {b.peak_rss_mb:.1f}",
        f"{c.cpu_s:.1f} ({1000 * c.cpu_s / r.agents:.0f} ms)",
        f"{c.rss_mb:,.0f}",
        f"{r.loadavg_1m:.1f}",
    ]


def fleet_lines(
    fleet: FleetResults | SectionError | None,
    plot_paths: Mapping[str, str],
    *,
    nproc: int | None,
) -> list[str]:
    lines = ["### Fleet", ""]
    if not isinstance(fleet, FleetResults):
        return lines + error_line("bench.fleet", fleet)
    m, s = fleet.machine, fleet.settings
    workers = sorted({r.workers for r in fleet.runs})
    lines += [
        f"One publish of {fleet.payload}, to N agent daemons on a mosquitto of the benchmark's "
        f"own (`make bench-scale`, `python -m bench.fleet`). The agents run in "
        f"{' / '.join(map(str, workers))} worker processes (about {s.agents_per_worker} agents "
        f"each, niceness +{s.worker_nice} under the broker's), every one the real daemon loop "
        "(`agent.app.AgentApp`) over its own MQTT connection (`agent.link.MqttLink`: stable "
        "client id, persistent MQTT 5 session, QoS 1, manual acks): chunk reassembly "
        "(`agent.receiver` over `plada.chunks`), signature check and decode (`agent.task_queue` "
        "over `plada.payload`), the version policy, the model store, status and result messages, "
        "with their state folders on "
        f"{s.state_on}. Only training is an instant stand-in (Device cost measures it). Machine: "
        f"{m.cpu_model}, {m.nproc or '?'} cores, {m.ram_gib or '?'} GiB, 1-minute load average "
        f"{_s(m.loadavg_start, 1)} at the start and {_s(m.loadavg_end, 1)} at the end (the "
        "load column: at each publish; the machine was shared with other jobs). Ready times "
        "are each device's own trial-log record, from the publish call (which first reads the "
        "group's retained topics, as `plada-build publish` does); lost = devices not ready "
        f"{s.ready_timeout_s:.0f} s after it. Broker and clients: CPU over the rollout (publish "
        "to every device ready; in brackets: % of one core, ms per device) and resident memory "
        "(broker: after the fleet connected / peak).",
        "",
    ]
    header = ["agents", "payload B", "messages", "publish acked s", "median ready s"]
    header += ["p90 ready s", "all ready s", "lost", "wire B / device", "broker CPU s"]
    header += ["broker RSS MB", "clients CPU s", "clients RSS MB", "load"]
    lines += table(header, [_row(r) for r in fleet.runs])
    if "fleet" in plot_paths:
        lines += [f"![fleet size]({plot_paths['fleet']})", ""]
    return lines + _reading(fleet, nproc=nproc) + CLUSTER_LINES


def _reading(fleet: FleetResults, *, nproc: int | None) -> list[str]:
    """The target, and what bounds 'all ready' here (computed from the runs)."""
    target = fleet.target
    at_target = [r for r in fleet.runs if r.agents == target.agents]
    lines = []
    for r in at_target:
        met = (
            r.all_ready_s is not None
            and r.all_ready_s <= target.all_ready_s
            and r.lost <= target.lost
        )
        lines.append(
            f"{r.agents:,} agents, {r.payload_bytes:,} B: all ready "
            f"{_s(r.all_ready_s)} s after the publish, {r.lost} lost (target <= "
            f"{target.all_ready_s:.0f} s, {target.lost} lost: {'met' if met else 'not met'})."
        )
    largest = max(fleet.runs, key=lambda r: (r.agents, r.payload_bytes))
    cores = nproc or fleet.machine.nproc or 1
    floor = largest.client_usage.cpu_s / cores
    per_device_ms = 1000 * largest.client_usage.cpu_s / largest.agents
    device = min(fleet.runs, key=lambda r: (r.agents, r.payload_bytes))
    lines.append(
        f"What bounds 'all ready' here is the agents' own work, not the broker: at "
        f"{largest.agents:,} agents the broker used {largest.broker_usage.cpu_s:.2f} CPU s and "
        f"{largest.broker_usage.peak_rss_mb:.0f} MB, the agents "
        f"{largest.client_usage.cpu_s:.1f} CPU s ({per_device_ms:.0f} ms per device: its "
        "chunks, signature check, decode, durable writes and messages), which on "
        f"{cores} shared cores cannot take less than {floor:.1f} s. On a real fleet each device "
        "does its share on its own CPU, so the fleet's time is the broker's fan-out plus one "
        "device's time: in the smallest run the median device was ready "
        f"{_s(device.time_to_model_median_s)} s after its first byte "
        f"({device.agents:,} agents sharing the same cores)."
    )
    lines += _memory(fleet.runs)
    return [" ".join(lines), ""]


def _memory(runs: list[FleetRun]) -> list[str]:
    """Memory per agent in the largest fleet, over what the broker and the worker interpreters
    held before any agent."""
    large = max(runs, key=lambda r: (r.agents, r.payload_bytes))
    base = large.connect.clients_base_rss_mb
    if base is None:
        return []
    return [
        f"Memory at {large.agents:,} agents: {large.broker_usage.rss_per_agent_kb:.0f} kB per "
        "agent in the broker (its connection, session and queues) and "
        f"{large.client_usage.rss_per_agent_kb:.0f} kB per agent in the workers, over the "
        f"{base:,.0f} MB their {large.workers} interpreters hold before any agent."
    ]


CLUSTER_LINES = [
    "**A larger fleet on an existing clustered broker** (not built or run here). Past what "
    "one mosquitto carries (a single-threaded process on one core, its connections bounded by "
    "its file descriptors, no fail-over), run a clustered MQTT 5 broker such as EMQX (or "
    "HiveMQ, VerneMQ) behind a TCP/TLS load balancer, and change only configuration: "
    "(1) connection limits: the listener's max connections and the nodes' file-descriptor "
    "limits sized for the fleet plus headroom, and a connection rate limit so a broker restart "
    "does not take every reconnect at once; "
    "(2) session persistence: persistent sessions replicated or stored durably across nodes "
    "(EMQX durable sessions, HiveMQ's replicated persistence), with a session expiry at least "
    "as long as a device may be offline (the agent asks for 7 days, `session_expiry_s`) and "
    "a server-side cap no lower; "
    "(3) queues: max queued messages per offline session at least the chunks of the tasks a "
    "group may publish while a device is away (manifest + chunks per task), max inflight "
    "(receive maximum) of 10-32 so chunks stream without flooding a thin link; "
    "(4) the retained-message store: on every node (EMQX keeps it replicated in its database), "
    "large enough for every group's manifests and chunks, message size limit at least the "
    "chunk size (`--max-chunk-bytes`, 128 KiB by default for AWS IoT Core); "
    "(5) the load balancer: TCP (layer 4) with long idle timeouts (above the keepalive x 1.5) "
    "and client-id-agnostic balancing; a cluster routes a session's messages to whichever node "
    "the device reconnects to. "
    "The agent's MQTT settings stay what they are (`[mqtt]`, agent/mqtt_config.py): a stable "
    "client id per device (`plada-<device_id>`), a persistent session (MQTT 5 clean start off "
    "with a session expiry; 3.1.1 clean session off), QoS 1 subscriptions with acks only after "
    "the piece is on disk, a keepalive of 60 s, and reconnects with exponential back-off "
    "(`reconnect_min_s` doubling to `reconnect_max_s`). Jitter on that back-off matters at "
    "this scale so a broker restart is not answered by every device in the same second: "
    "paho's back-off has none, so it belongs in the agent (or a per-device `reconnect_min_s`) "
    "before a fleet of many thousands.",
    "",
]
