"""bench.fleet end to end on a small fleet: 20 real agent daemons in 2 worker processes against a
real mosquitto, one chunked publish; the record's content is checked, never its timings."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench._common import BenchContext
from bench.fleet import run
from bench.fleet.scale import ScaleSettings
from bench.schema.fleet import FleetResults

pytestmark = pytest.mark.broker


def test_a_small_fleet_gets_one_chunked_publish_and_the_record_says_so(tmp_path: Path) -> None:
    # Prepare: no data/ref-v1 here, so the payload refers to the stand-in corpus
    ctx = BenchContext(data=tmp_path / "no-data", out=tmp_path / "results", work=tmp_path / "work")
    state = tmp_path / "state"
    state.mkdir()
    settings = replace(
        ScaleSettings(), workers=2, agents_per_worker=10, state_root=state, ready_timeout_s=240
    )
    # Execute
    run(ctx, sizes=(20,), budgets=(2048,), settings=settings)
    # Assert: the file is what the model reads back
    record = FleetResults.model_validate(
        json.loads((ctx.out / "fleet.json").read_text(encoding="utf-8"))
    )
    (row,) = record.runs
    assert (row.agents, row.workers, row.broker) == (20, 2, "mosquitto")
    assert row.payload_bytes <= 2048 and row.kept_images > 0
    # 2 KiB in 1 KiB messages: a manifest and three chunks, every device got each exactly once
    assert row.messages == 4
    assert (row.lost, row.incomplete_devices, row.duplicate_messages) == (0, 0, 0)
    assert row.messages_per_device == row.messages
    assert row.results_seen == 20 and row.results_seen_by_builder_s is not None
    wire = row.wire_bytes_per_device
    assert wire.min == wire.max == row.payload_bytes_per_device + row.overhead_bytes_per_device
    assert row.payload_bytes_per_device > row.payload_bytes  # chunk framing and the manifest
    assert row.all_ready_s is not None and row.ready_median_s is not None
    assert row.ready_first_s is not None and row.ready_first_s <= row.all_ready_s
    # Measured from /proc: a broker that ran and clients that worked
    assert row.broker_usage.rss_mb > 0 and row.connect.broker_nofile is not None
    assert row.client_usage.cpu_s > 0 and row.client_usage.rss_mb > 0
    assert record.settings.workers == 2 and "stand-in corpus" in record.payload
    # The agents' state folders are gone
    assert list(state.iterdir()) == []
