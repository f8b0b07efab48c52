"""agent.triallog: per-message byte accounting and per-task time to model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agent.triallog import TrialLog, mqtt_overhead_bytes


def test_overhead_counts_header_topic_packet_id_and_ack() -> None:
    # "a/b" (3 bytes) + 100 payload, QoS 1, 3.1.1: publish = 1 + 1 + (2+3+2) = 9, puback 4
    assert mqtt_overhead_bytes("a/b", 100, qos=1, mqtt5=False) == 13
    # MQTT 5 adds the properties length byte; a 200-byte payload needs a 2-byte remaining length
    assert mqtt_overhead_bytes("a/b", 200, qos=1, mqtt5=True) == 15
    assert mqtt_overhead_bytes("a/b", 100, qos=0, mqtt5=False) == 7


def test_triallog_task_totals_and_time_to_ready(tmp_path: Path) -> None:
    # Prepare
    log = TrialLog(tmp_path)
    log.record_message(
        topic="p/c/0", kind="chunk", payload_bytes=100, overhead_bytes=10, received_at=1000.0
    )
    log.record_message(
        topic="p/m", kind="manifest", payload_bytes=50, overhead_bytes=8, received_at=1001.0
    )
    log.record_message(
        topic="p/s", kind="status", payload_bytes=7, overhead_bytes=3, received_at=1001.5
    )
    # Execute
    log.assign_payload(topics_since=999.0, topics=["p/c/0", "p/m"], payload_id="abc")
    log.record_task(payload_id="abc", outcome="received", task="t", version=2, first_byte_at=1000.0)
    log.record_task(payload_id="abc", outcome="ready", ready_at=1004.5, train_seconds=1.25)
    summary = log.task_summary("abc")
    # Assert
    assert summary is not None
    assert (summary.task, summary.version, summary.outcome) == ("t", 2, "ready")
    assert (summary.messages, summary.payload_bytes, summary.overhead_bytes) == (2, 150, 18)
    assert summary.time_to_ready_s == pytest.approx(4.5)
    assert log.totals() == {"messages": 3, "payload_bytes": 157, "overhead_bytes": 21}


def test_triallog_survives_reopen_and_exports_csv(tmp_path: Path) -> None:
    # Prepare
    TrialLog(tmp_path).record_message(
        topic="x", kind="task", payload_bytes=5, overhead_bytes=1, payload_id="p"
    )
    TrialLog(tmp_path).record_task(payload_id="p", outcome="rejected", error="expired")
    # Execute
    rows = TrialLog(tmp_path).export_csv(tmp_path / "out.csv")
    # Assert
    with (tmp_path / "out.csv").open(encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert rows == 1
    assert table[0]["topic"] == "x"
    assert table[0]["outcome"] == "rejected"
    assert TrialLog(tmp_path).report()["tasks"][0]["error"] == "expired"
