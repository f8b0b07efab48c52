"""bench.fleet's pure parts: /proc parsing, a record row from device reports, the wire protocol
between coordinator and workers, and the rendered section."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pydantic import ValidationError

from bench.fleet.figures import Delivery, Usage, fleet_row
from bench.fleet.payloads import BudgetPayload
from bench.fleet.procstat import parse_stat_cpu, parse_status_mb, sample
from bench.fleet.protocol import (
    AwaitCommand,
    CommandLine,
    DeviceReport,
    EventLine,
    PayloadRecord,
    Ready,
)
from bench.render.fleet import fleet_lines
from bench.schema.fleet import FleetResults

TICKS = os.sysconf("SC_CLK_TCK")


def test_stat_cpu_is_read_after_a_command_name_with_spaces_and_parentheses() -> None:
    # Prepare: fields 14 and 15 (utime, stime) in clock ticks
    rest = " ".join(["S", *["0"] * 10, str(3 * TICKS), str(TICKS), *["0"] * 30])
    stat = f"123 (odd ) name) {rest}"
    # Execute / Assert
    assert parse_stat_cpu(stat) == pytest.approx(4.0)


def test_status_fields_are_read_in_mb_and_a_missing_one_is_named() -> None:
    status = "Name:\tmosquitto\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n"
    assert parse_status_mb(status, "VmRSS") == 10.0
    assert parse_status_mb(status, "VmHWM") == 20.0
    with pytest.raises(ValueError, match="VmSwap"):
        parse_status_mb(status, "VmSwap")


def test_sample_reads_this_process() -> None:
    got = sample(os.getpid())
    assert got.rss_mb > 0 and got.peak_rss_mb >= got.rss_mb and got.cpu_s > 0


def _delivery(**changes: Any) -> Delivery:
    fields: dict[str, Any] = {
        "payload": BudgetPayload(budget_bytes=2048, version=1, keep=900, data=b"x" * 2000),
        "payload_id": "p1",
        "messages": 4,
        "started": 1000.0,
        "acked": 1000.5,
        "done": 1005.0,
        "not_ready": [],
        "results_seen": {"a": 1003.0, "b": 1004.5},
        "broker": Usage(cpu_s=0.5, rss_mb=10.0, peak_rss_mb=12.0, at=5.0),
        "clients": Usage(cpu_s=4.0, rss_mb=200.0, peak_rss_mb=210.0, at=5.0),
        "loadavg_1m": 1.5,
        "agents": 2,
    }
    return Delivery(**(fields | changes))


def _device(name: str, **record: Any) -> DeviceReport:
    return DeviceReport(device_id=name, payloads=[PayloadRecord(payload_id="p1", **record)])


def _row(delivery: Delivery, devices: list[DeviceReport]) -> dict[str, Any]:
    connect: dict[str, float | None] = {
        "seconds": 3.0,
        "broker_cpu_s": 0.1,
        "broker_rss_mb": 9.0,
        "clients_rss_mb": 150.0,
        "broker_nofile": 20000,
        "broker_idle_rss_mb": 8.0,
        "clients_base_rss_mb": 100.0,
    }
    return fleet_row(
        delivery, devices, workers=2, chunk_bytes=1024, connect=connect, broker_kind="mosquitto"
    )


def test_a_row_takes_ready_times_and_bytes_from_the_devices_own_records() -> None:
    # Prepare
    ready = {"outcome": "ready", "messages": 4, "payload_bytes": 2400, "overhead_bytes": 200}
    devices = [
        _device("a", **ready, first_byte_at=1000.6, ready_at=1002.0),
        _device("b", **ready, first_byte_at=1000.7, ready_at=1004.0),
    ]
    # Execute
    row = _row(_delivery(), devices)
    # Assert
    assert (row["ready_first_s"], row["all_ready_s"], row["ready_median_s"]) == (2.0, 4.0, 3.0)
    assert row["first_byte_s"] == pytest.approx(0.6)
    assert row["results_seen_by_builder_s"] == 4.5 and row["lost"] == 0
    assert row["wire_bytes_per_device"] == {"mean": 2600.0, "min": 2600, "max": 2600}
    assert row["broker_usage"]["cpu_percent"] == 10.0  # 0.5 s of CPU over a 5 s window
    assert row["client_usage"]["rss_per_agent_kb"] == 51200.0  # (200 - 100) MB over 2 agents
    assert row["broker_usage"]["rss_per_agent_kb"] == 1024.0  # (10 - 8) MB over 2 agents
    FleetResults.model_validate(_results([row]))  # what the schema reads


def test_a_device_without_a_record_is_lost_and_leaves_all_ready_unset() -> None:
    # Prepare: b never heard of the payload; a got one message twice
    devices = [
        _device("a", outcome="ready", messages=5, payload_bytes=3000, first_byte_at=1000.6,
                ready_at=1002.0),
        DeviceReport(device_id="b", payloads=[]),
    ]  # fmt: skip
    # Execute
    row = _row(_delivery(results_seen={"a": 1003.0}), devices)
    # Assert
    assert (row["lost"], row["incomplete_devices"], row["duplicate_messages"]) == (1, 1, 1)
    assert row["all_ready_s"] is None and row["results_seen_by_builder_s"] is None
    assert row["ready_first_s"] == 2.0
    assert row["wire_bytes_per_device"]["min"] == 0


def test_protocol_lines_round_trip_and_a_bad_one_names_its_field() -> None:
    line = CommandLine(command=AwaitCommand(version=3, timeout_s=9)).model_dump_json()
    assert CommandLine.model_validate_json(line).command == AwaitCommand(version=3, timeout_s=9)
    event = EventLine(event=Ready(version=3, ready=2, not_ready=["x"])).model_dump_json()
    assert EventLine.model_validate_json(event).event == Ready(version=3, ready=2, not_ready=["x"])
    with pytest.raises(ValidationError, match="timeout_s"):
        CommandLine.model_validate_json('{"command": {"cmd": "await", "version": 1}}')


def _results(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "payload": "signed task payloads of 2,000 B",
        "machine": {
            "cpu_model": "Fake CPU",
            "nproc": 2,
            "ram_gib": 23.5,
            "loadavg_start": 1.0,
            "loadavg_end": 2.0,
        },
        "settings": {
            "workers": 2,
            "switch_interval_s": 0.05,
            "chunk_bytes": 1024,
            "ready_timeout_s": 120.0,
            "state_on": "/dev/shm",
            "broker_max_connections": 20000,
            "broker_nofile_requested": 65536,
            "broker_autosave_interval_s": 60,
            "broker_tcp_nodelay": True,
        },
        "target": {"agents": 2, "all_ready_s": 30.0, "lost": 0},
        "runs": rows,
    }


def test_the_section_states_the_target_the_bound_and_the_clustered_broker() -> None:
    # Prepare
    ready = {"outcome": "ready", "messages": 4, "payload_bytes": 2400, "overhead_bytes": 200}
    devices = [
        _device("a", **ready, first_byte_at=1000.6, ready_at=1002.0),
        _device("b", **ready, first_byte_at=1000.7, ready_at=1004.0),
    ]
    fleet = FleetResults.model_validate(_results([_row(_delivery(), devices)]))
    # Execute
    text = "\n".join(fleet_lines(fleet, {"fleet": "bench/results/fleet.png"}, nproc=2))
    # Assert
    assert "| 2 | 2,000 | 4 | 0.50 | 3.00 |" in text
    assert "2 agents, 2,000 B: all ready 4.00 s after the publish, 0 lost" in text
    assert "target <= 30 s, 0 lost: met" in text
    assert "the agents 4.0 CPU s (2000 ms per device" in text
    assert "cannot take less than 2.0 s" in text
    assert "Memory at 2 agents: 1024 kB per agent in the broker" in text
    assert "51200 kB per agent in the workers, over the 100 MB their 2 interpreters" in text
    assert "![fleet size](bench/results/fleet.png)" in text
    assert "EMQX" in text and "stable client id" in text and "jitter" in text.lower()
    assert "1-minute load average 1.0 at the start and 2.0 at the end" in text
