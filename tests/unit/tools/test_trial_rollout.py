"""The trial's rollout stages without a network: the canary the fleet plan picks, the mislabelled
build, the rollout targets and the report's rollout tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from builder.fleet.rollout_record import (
    DeviceOutcome,
    HomeAssistantView,
    RolloutRecord,
    ThresholdRecord,
)
from plada.payload import inspect_payload
from plada.signing import generate_keypair, load_private_key, load_trusted_keys
from tools.fleet_harness import make_payload_bytes
from tools.trial.fleet_plan import CANARY_GROUP, REST_GROUP, plan_fleet
from tools.trial.profiles import load_profiles
from tools.trial.report_model import DeviceRow, StageReport
from tools.trial.rollout_tables import rollout_table
from tools.trial.stage_rollout import ha_text, mislabelled
from tools.trial.targets import check_targets

ENTITY = "homeassistant/update/plada_x/shapes/config"


def test_canary_holds_every_profile_and_class_with_few_devices() -> None:
    # Prepare / Execute: the default trial fleet, two classes dealt round-robin
    fleet = plan_fleet("lora:3,nbiot:2,ltem:3,satellite:2", ["a", "b"], load_profiles())
    # Assert
    canary = [d for d in fleet if d.group == CANARY_GROUP]
    assert [d.name for d in canary] == ["lora-1", "nbiot-1", "ltem-1", "satellite-1"]
    assert {d.device_class for d in canary} == {"a", "b"}
    assert {d.group for d in fleet} == {CANARY_GROUP, REST_GROUP}


def test_a_fleet_the_canary_would_swallow_keeps_one_device_in_the_rest() -> None:
    fleet = plan_fleet("lora:1,ltem:1", ["a", "b"], load_profiles())
    assert [(d.name, d.group) for d in fleet] == [("lora-1", CANARY_GROUP), ("ltem-1", REST_GROUP)]


def test_mislabelled_build_moves_every_label_and_stays_signed(tmp_path: Any) -> None:
    # Prepare
    private, public = generate_keypair(tmp_path / "keys")
    data = make_payload_bytes(None, num_classes=4, k=40)
    # Execute
    bad = mislabelled(data, version=5, key=load_private_key(private))
    # Assert: same selection, every label the next class, signed by the trusted key
    before = inspect_payload(data, trusted_keys={}).payload
    after = inspect_payload(bad, trusted_keys=load_trusted_keys([public]))
    assert after.payload.version == 5
    assert np.array_equal(after.payload.indices, before.indices)
    assert np.array_equal(after.payload.labels, (before.labels + 1) % 4)
    assert not np.any(after.payload.labels == before.labels)


def _outcome(device: str, role: str, verdict: Any, installed: int, **extra: Any) -> DeviceOutcome:
    group = CANARY_GROUP if role == "canary" else REST_GROUP
    return DeviceOutcome(
        device_id=device,
        group=group,
        role=role,  # type: ignore[arg-type]
        verdict=verdict,
        installed_version=installed,
        **extra,
    )


def _record(outcome: str, devices: list[DeviceOutcome]) -> RolloutRecord:
    return RolloutRecord(
        task="shapes",
        version=3,
        payload_id="ab" * 32,
        canary_groups=[CANARY_GROUP],
        rest_groups=[REST_GROUP],
        threshold=ThresholdRecord(min_fraction=0.9),
        timeout_s=300,
        on_timeout="abort",
        outcome=outcome,  # type: ignore[arg-type]
        reason="test",
        started_at=0.0,
        decided_at=1.0,
        finished_at=2.0,
        devices=devices,
    )


def _row(device: str, delivered: bool, event: str = "") -> DeviceRow:
    return DeviceRow(
        device=device,
        device_class="a",
        profile="lora",
        delivered=delivered,
        payload_bytes=2000 if delivered else 0,
        framing_bytes=40,
        device_counted_bytes=2000 if delivered else None,
        wire_down_bytes=2600 if delivered else 300,
        wire_up_bytes=900,
        wire_down_packets=6,
        lost_down_packets=0,
        lost_up_packets=0,
        tcp_retrans_segs=0,
        connects=0,
        link_downs=0,
        time_to_ready_s=None,
        min_time_s=None,
        event=event,
    )


def _stage(kind: str, record: RolloutRecord, rows: list[DeviceRow]) -> StageReport:
    return StageReport(
        name=kind,
        kind=kind,
        description=kind,
        started_at=0.0,
        seconds=1.0,
        timeout_s=300.0,
        rows=rows,
        broker_tcp_retrans_segs=0,
        rollout=record,
    )


def test_rollout_targets_need_the_outcome_the_rollback_and_a_rest_that_never_received() -> None:
    # Prepare
    promoted = _record(
        "promoted", [_outcome("c", "canary", "pass", 3), _outcome("r", "rest", "pass", 3)]
    )
    aborted = _record(
        "aborted", [_outcome("c", "canary", "below", 2), _outcome("r", "rest", None, 2)]
    )
    leaked = [_row("c", True), _row("r", True)]  # a rest device whose log holds the payload
    # Execute
    good = check_targets(
        [
            _stage("promote", promoted, []),
            _stage("abort", aborted, [_row("c", True), _row("r", False)]),
        ],
        timed_s=10.0,
        devices=2,
    )
    bad = check_targets([_stage("abort", aborted, leaked)], timed_s=10.0, devices=2)
    # Assert
    checks = {t.name: t for t in good}
    assert checks["staged rollout promoted"].met and checks["staged rollout aborted"].met
    assert not any(t.name.startswith("lora:") for t in good)  # rollouts are not the wire target
    (leak,) = [t for t in bad if t.name == "staged rollout aborted"]
    assert not leak.met and "r" in leak.detail.split("received it: ")[1]


def test_rollout_table_shows_verdicts_and_what_home_assistant_shows() -> None:
    # Prepare
    view = HomeAssistantView(
        entity_topic=ENTITY,
        present=True,
        available=True,
        installed_version="shapes@2",
        latest_version="shapes@2",
        release_summary="v2 installed; v3 revoked by the builder at 12:00",
        state="off",
    )
    record = _record("aborted", [_outcome("c", "canary", "below", 2, home_assistant=view)])
    event = f"canary: below; serving v2; Home Assistant: {ha_text(view)}"
    # Execute
    table = rollout_table(_stage("abort", record, [_row("c", True, event)]))
    # Assert
    assert "up to date, installed shapes@2, latest shapes@2, 'v2 installed; v3 revoked" in table
    assert "Rollout of shapes v3: aborted" in table and "What Home Assistant shows" in table
    assert ha_text(None) == "no entity"
    assert ha_text(HomeAssistantView(entity_topic=ENTITY, present=True)).startswith("unknown")
