"""The trial's staged rollout stages end to end on real links: two real `plada-agent run` daemons
(the tests' tiny device, two classes) in their own network namespaces, one on `lora` (the canary)
and one on `ltem` (the rest), a real mosquitto in the broker namespace; the task as PLADA (the
accuracy the threshold refers to), then a promoted rollout and an aborted one of a mislabelled
build. Checks the report's verdicts, versions and what Home Assistant shows, never timings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.fleet.rollout_record import RolloutRecord
from tests.support.netns import require_link_emulation
from tools.trial import registry
from tools.trial.fleet_plan import CANARY_GROUP, REST_GROUP, plan_fleet
from tools.trial.kit import TinyKit
from tools.trial.orchestrator import TrialSettings, default_stages, run_trial
from tools.trial.profiles import load_profiles
from tools.trial.report_model import TrialReport
from tools.trial.trial_cli import save_report

pytestmark = [pytest.mark.netns, pytest.mark.broker]


def test_trial_rollouts_promote_then_abort_with_home_assistant_view(tmp_path: Path) -> None:
    # Prepare: one device per profile and class; the fleet plan puts lora-1 in the canary
    require_link_emulation()
    kit = TinyKit(tmp_path / "kit", classes=("tiny-a", "tiny-b"))
    fleet = plan_fleet("lora:1,ltem:1", kit.classes, load_profiles())
    assert [(d.name, d.group) for d in fleet] == [
        ("lora-1", CANARY_GROUP),
        ("ltem-1", REST_GROUP),
    ]
    settings = TrialSettings(stage_timeout_s=300, startup_timeout_s=400)
    stages = default_stages(("plada", "promote", "abort"))
    # Execute
    report = run_trial(kit, fleet, folder=tmp_path / "run", stages=stages, settings=settings)
    paths = save_report(report, tmp_path / "out", "trial")
    # Assert: the promoted rollout reached both devices, canary first
    plada, promote, abort = report.stages
    assert (promote.kind, abort.kind) == ("promote", "abort")
    good, bad = promote.rollout, abort.rollout
    assert good is not None and bad is not None
    assert good.outcome == "promoted", good.reason
    assert (good.version, bad.version) == (2, 3)
    reference = {r.device: r.accuracy for r in plada.rows}
    for d in good.devices:
        assert d.verdict == "pass" and d.installed_version == 2, d
        # the same selection signed again trains the same head (seeded): the same accuracy
        assert d.reported_accuracy == reference[d.device_id]
        ha = d.home_assistant
        assert ha is not None and ha.present and ha.available
        assert (ha.installed_version, ha.latest_version, ha.state) == (
            "shapes@2",
            "shapes@2",
            "off",
        )
    roles = {d.device_id: (d.role, d.group) for d in good.devices}
    assert roles == {"lora-1": ("canary", CANARY_GROUP), "ltem-1": ("rest", REST_GROUP)}
    assert good.device("ltem-1").published_at >= good.decided_at  # type: ignore[operator]
    for row in promote.rows:
        assert row.delivered and row.device_counted_bytes == row.payload_bytes > 0
        assert row.wire_down_bytes > row.payload_bytes  # the kernel saw it, and headers
        assert "pass" in row.event and "up to date" in row.event
    # Assert: the mislabelled build failed on the canary, was revoked, never reached the rest
    assert bad.outcome == "aborted", bad.reason
    canary, rest = bad.device("lora-1"), bad.device("ltem-1")
    assert canary.verdict == "below" and canary.reported_version == 3
    assert canary.reported_accuracy is not None and canary.required_accuracy is not None
    assert canary.reported_accuracy < canary.required_accuracy
    assert canary.installed_version == 2 and canary.rolled_back_at is not None
    assert rest.verdict is None and rest.published_at is None and rest.installed_version == 2
    assert bad.revocation_id is not None and [g.group for g in bad.revoked] == [CANARY_GROUP]
    ha = canary.home_assistant
    assert ha is not None and (ha.installed_version, ha.state) == ("shapes@2", "off")
    assert ha.release_summary is not None and "v3 revoked" in ha.release_summary
    assert rest.home_assistant is not None and rest.home_assistant.release_summary == "v2 installed"
    rows = {r.device: r for r in abort.rows}
    assert rows["lora-1"].delivered and rows["lora-1"].payload_bytes > 0
    assert not rows["ltem-1"].delivered and rows["ltem-1"].payload_bytes == 0
    assert rows["ltem-1"].messages_received is None  # its agent's log has no message of v3
    checks = {t.name: t for t in report.targets if t.name.startswith("staged rollout")}
    assert sorted(checks) == ["staged rollout aborted", "staged rollout promoted"]
    assert all(t.met for t in checks.values()), checks
    # Assert: the files say the same, the records sit beside the report, no namespace is left
    assert TrialReport.load(paths["json"]) == report
    assert RolloutRecord.load(tmp_path / "out" / "trial-rollout-promote.json") == good
    assert RolloutRecord.load(tmp_path / "out" / "trial-rollout-abort.json") == bad
    saved = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert saved["stages"][2]["rollout"]["devices"][0]["home_assistant"]["state"] == "off"
    markdown = paths["md"].read_text(encoding="utf-8")
    assert "Rollout of shapes v2: promoted" in markdown
    assert "Rollout of shapes v3: aborted" in markdown
    assert "What Home Assistant shows" in markdown
    left = [n for n in registry.trial_namespaces() if registry.trial_id_of(n) == report.trial_id]
    assert left == []
