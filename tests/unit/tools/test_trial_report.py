"""The field trial's pure parts: the fleet plan, the targets, and the report files (JSON read back,
SQLite rows, markdown tables, plots) on a report built here, without namespaces or agents."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tools.trial.errors import TrialError, TrialRunError
from tools.trial.fleet_plan import plan_fleet
from tools.trial.profiles import load_profiles
from tools.trial.report_files import savings_table
from tools.trial.report_model import DeviceInfo, DeviceRow, StageReport, TrialReport
from tools.trial.targets import check_targets
from tools.trial.trial_cli import END, START, save_report, update_readme


def _row(device: str, profile: str, **fields: Any) -> DeviceRow:
    base: dict[str, Any] = {
        "device": device,
        "device_class": "c-a" if device.endswith("1") else "c-b",
        "profile": profile,
        "delivered": True,
        "payload_bytes": 2000,
        "framing_bytes": 40,
        "device_counted_bytes": 2000,
        "wire_down_bytes": 2600,
        "wire_up_bytes": 900,
        "wire_down_packets": 6,
        "lost_down_packets": 0,
        "lost_up_packets": 0,
        "tcp_retrans_segs": 0,
        "connects": 0,
        "link_downs": 0,
        "time_to_ready_s": 5.0,
        "received_s": 3.0,
        "min_time_s": 0.3,
        "accuracy": 0.7,
    }
    return DeviceRow(**(base | fields))


def _stage(kind: str, rows: list[DeviceRow]) -> StageReport:
    return StageReport(
        name=kind,
        kind=kind,
        description=kind,
        started_at=0.0,
        seconds=1.0,
        timeout_s=300.0,
        rows=rows,
        broker_tcp_retrans_segs=0,
    )


def _report() -> TrialReport:
    plada = [_row("lora-1", "lora"), _row("ltem-1", "ltem", wire_down_bytes=2300)]
    images = [
        _row("lora-1", "lora", payload_bytes=60_000, wire_down_bytes=80_000, delivered=False),
        _row("ltem-1", "ltem", payload_bytes=60_000, wire_down_bytes=64_000),
    ]
    stages = [_stage("plada", plada), _stage("images", images)]
    return TrialReport(
        trial_id="1-abcd",
        started_at=1.7e9,
        prepare_seconds=10.0,
        timed_seconds=200.0,
        machine={"cpus": 2, "loadavg_before": ["1", "1", "1"], "loadavg_after": ["2", "2", "2"]},
        task={"name": "t", "version": 1, "payload_bytes": 2000, "num_indices": 300},
        kit={"kind": "test"},
        devices=[
            DeviceInfo(name="lora-1", device_class="c-a", encoder="e-a", profile="lora"),
            DeviceInfo(name="ltem-1", device_class="c-b", encoder="e-b", profile="ltem"),
        ],
        profiles={"lora": {"description": "thin"}, "ltem": {"description": "less thin"}},
        stages=stages,
        scrapes=[],
        targets=check_targets(stages, timed_s=200.0, devices=2),
    )


def test_classes_are_dealt_round_robin_over_the_fleet() -> None:
    fleet = plan_fleet("lora:3,ltem:1", ["a", "b"], load_profiles())
    assert [(d.name, d.device_class, d.profile.name) for d in fleet] == [
        ("lora-1", "a", "lora"),
        ("lora-2", "b", "lora"),
        ("lora-3", "a", "lora"),
        ("ltem-1", "b", "ltem"),
    ]
    with pytest.raises(TrialError, match="profile:count"):
        plan_fleet("lora:x", ["a"], load_profiles())
    with pytest.raises(TrialError):
        plan_fleet("nosuchprofile:1", ["a"], load_profiles())


def test_targets_judge_the_thin_profile_only_and_a_late_device_fails_them() -> None:
    checks = {t.name: t for t in _report().targets}
    plada_wire = checks["lora: plada wire bytes down <= 1.5x payload + MQTT framing"]
    assert plada_wire.met and plada_wire.value == pytest.approx(2600 / 2040, abs=1e-3)
    assert not checks["lora: images (60000 B) reaches every device"].met
    assert not checks["lora: images wire bytes down <= 1.5x payload + MQTT framing"].met
    assert checks["timed part under 10 minutes"].met
    assert not any(name.startswith("ltem") for name in checks)


def test_report_files_say_what_the_report_says(tmp_path: Path) -> None:
    report = _report()
    paths = save_report(report, tmp_path, "trial")
    assert TrialReport.load(paths["json"]) == report
    with closing(sqlite3.connect(paths["sqlite"])) as db:
        rows = db.execute("SELECT kind, device, wire_down_bytes FROM rows ORDER BY kind, device")
        assert rows.fetchall() == [
            ("images", "lora-1", 80_000),
            ("images", "ltem-1", 64_000),
            ("plada", "lora-1", 2600),
            ("plada", "ltem-1", 2300),
        ]
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "(1/1 not in time)" in markdown  # the late lora device
    # received, then ready (PLADA trains on the device), then the late images
    assert "| lora | 1 | 2600 B | 3.0 | 5.0 | 80.0 kB | - (1/1 not in time) |" in savings_table(
        report
    )
    assert (tmp_path / "trial_bytes.png").read_bytes().startswith(b"\x89PNG")


def test_readme_section_is_replaced_between_its_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\nrest\n", encoding="utf-8")
    update_readme(readme, _report(), tmp_path / "bench", "trial")
    text = readme.read_text(encoding="utf-8")
    assert "old" not in text and text.startswith("intro\n") and text.endswith(f"{END}\nrest\n")
    assert "](bench/trial_ready.png)" in text
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(TrialError, match="markers"):
        update_readme(readme, _report(), tmp_path / "bench", "trial")


def test_a_report_with_a_bad_field_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "trial.json"
    path.write_text(
        _report().model_dump_json().replace('"timed_seconds":200.0', '"timed_seconds":"x"')
    )
    with pytest.raises(TrialRunError, match="timed_seconds"):
        TrialReport.load(path)
