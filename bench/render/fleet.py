"""### Fleet: one publish to N agent daemons on a local mosquitto."""

from __future__ import annotations

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.system import FleetResults, FleetRun


def fleet_lines(fleet: FleetResults | SectionError | None, *, nproc: int | None) -> list[str]:
    lines = ["### Fleet", ""]
    if not isinstance(fleet, FleetResults):
        return lines + error_line("bench.fleet", fleet)
    lines += [
        f"One publish of the {fleet.payload} to N agent daemons on a local mosquitto (real MQTT "
        "link, signature check and decode; training replaced by an instant stand-in, see Device "
        "cost for it). Wire bytes per device = payload + the trial log's MQTT overhead estimate.",
        "",
    ]
    rows = [
        [
            str(r.agents),
            str(r.messages),
            f"{r.payload_bytes:,}",
            f"{r.publish_acked_s:.3f}",
            f"{r.ready_median_s:.3f}",
            f"{r.all_ready_s:.3f}",
            f"{r.results_seen_by_builder_s:.2f}",
            f"{r.wire_bytes_per_device.mean:,.0f}",
        ]
        for r in fleet.runs
    ]
    header = ["agents", "messages", "payload B", "publish acked s", "median ready s"]
    header += ["all ready s", "all results seen s", "wire B / device"]
    return lines + table(header, rows) + _reading(fleet.runs, nproc=nproc)


def _reading(runs: list[FleetRun], *, nproc: int | None) -> list[str]:
    """Why 'ready' grows with N here: the harness, not the broker (computed from the runs)."""
    if len(runs) < 2:
        return []
    small = min(runs, key=lambda r: r.agents)
    large = max(runs, key=lambda r: r.agents)
    acked = [r.publish_acked_s for r in runs]
    per_agent = (large.all_ready_s - small.all_ready_s) / max(large.agents - small.agents, 1)
    return [
        f"The builder's cost does not grow with N: one publish, acknowledged in "
        f"{min(acked):.2f} to {max(acked):.2f} s and every device receives one message of the "
        f"same size. 'Ready' does grow, by about {per_agent:.2f} s per extra agent: the "
        f"agents here are threads of one Python process on {nproc or '?'} cores, so their "
        "signature checks and payload decodes queue on one interpreter lock. On a real fleet each "
        f"device decodes on its own CPU, which the {small.agents}-agent row measures: "
        f"{small.all_ready_s:.2f} s from publish to ready.",
        "",
    ]
