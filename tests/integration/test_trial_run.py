"""`make trial`'s orchestrator end to end on real links: two real `plada-agent run` daemons (the
tests' tiny device, two device classes) in their own network namespaces on the `lora` profile, a
real mosquitto in the broker namespace; the task as PLADA, as images and as weights, then an update
across a mid-transfer link drop and an offline device; the report written and read back. Checks
what the report says, never how long anything took. The rollout stages: test_trial_rollout.py."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import zstandard

from tests.support.netns import require_link_emulation
from tools.trial import registry
from tools.trial.fleet_plan import plan_fleet
from tools.trial.kit import TinyKit
from tools.trial.orchestrator import TrialSettings, default_stages, run_trial
from tools.trial.profiles import load_profiles
from tools.trial.report_model import TrialReport
from tools.trial.trial_cli import save_report

pytestmark = [pytest.mark.netns, pytest.mark.broker]


def test_trial_over_lora_reports_every_device_and_stage(tmp_path: Path) -> None:
    # Prepare: the tiny kit with two classes, one device of each on the lora profile
    require_link_emulation()
    kit = TinyKit(tmp_path / "kit", classes=("tiny-a", "tiny-b"))
    fleet = plan_fleet("lora:2", kit.classes, load_profiles())
    settings = TrialSettings(stage_timeout_s=300, startup_timeout_s=400)
    payload = kit.payload_path.read_bytes()
    # Execute
    stages = default_stages(("plada", "images", "weights", "drop"))
    report = run_trial(
        kit, fleet, folder=tmp_path / "run", stages=stages, settings=settings, log=print
    )
    paths = save_report(report, tmp_path / "out", "trial")
    # Assert: every stage reached both devices, over the lora links
    assert [s.kind for s in report.stages] == ["plada", "images", "weights", "drop"]
    assert {(d.name, d.device_class) for d in report.devices} == {
        ("lora-1", "tiny-a"),
        ("lora-2", "tiny-b"),
    }
    for stage in report.stages:
        assert [r.device for r in stage.rows] == ["lora-1", "lora-2"], stage.kind
        for row in stage.rows:
            assert row.delivered, (stage.kind, row)
            assert row.profile == "lora"
            counted = row.device_counted_bytes or 0  # the receiver's own count
            assert (
                counted >= row.payload_bytes
                if stage.kind == "drop"
                else counted == row.payload_bytes
            )
            assert row.wire_down_bytes > row.payload_bytes  # the kernel saw it all, and headers
            assert row.wire_up_bytes > 0
            assert row.time_to_ready_s is not None
    plada, images, weights, drop = report.stages
    for row in plada.rows:
        assert row.payload_bytes == len(payload) == report.task["payload_bytes"]
        assert row.framing_bytes > 0
        assert row.scraped["received_bytes"] == len(payload)  # the agent's Prometheus endpoint
        assert row.scraped["link_connected"] == 1
        assert row.scraped["tasks_installed"] == 1
        assert row.accuracy is not None and 0.0 <= row.accuracy <= 1.0
        assert row.device_time_to_model_s is not None
    for row in images.rows:
        assert row.payload_bytes > len(payload)  # images cost more than the selection
    for row, trained in zip(weights.rows, plada.rows, strict=True):
        head = tmp_path / "run" / "devices" / row.device / "state"
        onnx = next(head.rglob("*.onnx"))  # the head the weights stage sent
        packed = zstandard.ZstdCompressor(level=19).compress(onnx.read_bytes())
        assert row.payload_bytes == len(packed)
        assert row.accuracy == trained.accuracy
    cut, offline = drop.rows  # lora-1: its link cut mid-transfer; lora-2: offline at the publish
    assert cut.event.startswith("link down") and cut.connects >= 1 and cut.link_downs >= 1
    assert offline.event.startswith("offline") and offline.connects >= 1
    for row in drop.rows:
        assert row.messages_needed is not None and row.messages_needed > 2  # manifest + chunks
        assert row.messages_received is not None and row.messages_received >= row.messages_needed
    assert {t.name.split(" ")[0] for t in report.targets if "sent again" in t.name} == {
        "lora-1",
        "lora-2",
    }
    reached = [t for t in report.targets if t.name.endswith("reaches every device")]
    assert len(reached) == 3 and all(t.met for t in reached)
    assert {s.device for s in report.scrapes} == {"lora-1", "lora-2"}
    # Assert: the files say the same, and the trial left no namespace behind
    assert TrialReport.load(paths["json"]) == report
    with closing(sqlite3.connect(paths["sqlite"])) as db:
        (rows,) = db.execute("SELECT COUNT(*) FROM rows WHERE delivered = 1").fetchone()
        (samples,) = db.execute("SELECT COUNT(*) FROM samples").fetchone()
    assert rows == 8 and samples > 0
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "lora-1" in markdown and "trial_bytes.png" in markdown
    for name in ("trial_ready.png", "trial_bytes.png", "trial_accuracy.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG")
    left = [n for n in registry.trial_namespaces() if registry.trial_id_of(n) == report.trial_id]
    assert left == []
