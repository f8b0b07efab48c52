"""The rollout record (validated JSON, bad fields named), its Markdown, and what Home Assistant
shows, rendered from the agent's own discovery config and status as the broker would retain them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.records import RolledBack, TaskRecord
from agent.status import StatusReporter
from builder.errors import RolloutRecordError
from builder.fleet.home_assistant import entity_topic, home_assistant_view
from builder.fleet.rollout_record import DeviceOutcome, RolloutRecord, ThresholdRecord
from builder.fleet.rollout_render import to_markdown
from plada.topics import TopicScheme

TOPICS = TopicScheme()
DIGEST = "ab" * 32


def _record() -> RolloutRecord:
    return RolloutRecord(
        task="shapes",
        version=2,
        payload_id=DIGEST,
        canary_groups=["canary"],
        rest_groups=["field"],
        threshold=ThresholdRecord(min_fraction=0.9),
        timeout_s=60,
        on_timeout="abort",
        outcome="aborted",
        reason="canary failed: c1 (below)",
        started_at=1000.0,
        decided_at=1010.0,
        finished_at=1012.0,
        devices=[
            DeviceOutcome(
                device_id="c1",
                group="canary",
                role="canary",
                device_class="tiny",
                verdict="below",
                reported_accuracy=0.2,
                simulated_accuracy=0.9,
                required_accuracy=0.81,
                installed_version=1,
                published_at=1001.0,
                answered_at=1009.0,
                rolled_back_at=1011.5,
            ),
            DeviceOutcome(device_id="f1", group="field", role="rest", verdict=None),
        ],
    )


def test_record_round_trips_through_json(tmp_path: Path) -> None:
    # Prepare
    record = _record()
    # Execute
    record.save(tmp_path / "rollout.json")
    again = RolloutRecord.load(tmp_path / "rollout.json")
    # Assert
    assert again == record
    assert again.device("c1").verdict == "below"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"payload_id": "xyz"}, "payload_id"),
        ({"surprise": 1}, "surprise: unknown field"),
    ],
)
def test_a_bad_record_names_its_field(change: dict[str, object], named: str) -> None:
    # Prepare
    data = json.loads(_record().model_dump_json()) | change
    # Execute / Assert
    with pytest.raises(RolloutRecordError, match=named):
        RolloutRecord.parse(data)


def test_a_bad_device_verdict_is_named_with_its_path() -> None:
    # Prepare
    data = json.loads(_record().model_dump_json())
    data["devices"][0]["verdict"] = "fine"
    # Execute / Assert
    with pytest.raises(RolloutRecordError, match=r"devices\.0\.verdict"):
        RolloutRecord.parse(data)


def test_markdown_has_a_row_per_device_and_the_home_assistant_section() -> None:
    # Execute
    text = to_markdown(_record())
    # Assert
    assert "Rollout of shapes v2: aborted" in text
    assert "| c1 | canary | canary | tiny | 20.0 % | 81.0 % | below | v1 | 8.0 s | 1.5 s |" in text
    assert "| f1 | field | rest | - | - | - | not sent | none |" in text
    assert "#### What Home Assistant shows" in text


def _retained(reporter: StatusReporter, *, online: bool = True) -> dict[str, bytes]:
    """What the broker retains for one device: its entity config, status and availability."""
    topic, config = reporter.home_assistant_task_discovery("shapes", prefix="homeassistant")
    return {
        topic: config,
        TOPICS.status(reporter.device_id): reporter.to_json(),
        TOPICS.availability(reporter.device_id): b"online" if online else b"offline",
    }


def _reporter(record: TaskRecord) -> StatusReporter:
    reporter = StatusReporter(device_id="c1", device_class="tiny", topics=TOPICS, group="canary")
    reporter.installed(task="shapes", version=record.version, records={"shapes": record})
    return reporter


def test_home_assistant_after_a_promotion_shows_the_new_version_up_to_date() -> None:
    # Prepare
    record = TaskRecord(installed="000002-shapes-v2", version=2, payload_digest=DIGEST)
    # Execute
    view = home_assistant_view(_retained(_reporter(record)), device_id="c1", task="shapes")
    # Assert
    assert view.present and view.available
    assert (view.installed_version, view.latest_version, view.state) == (
        "shapes@2",
        "shapes@2",
        "off",
    )
    assert view.release_summary == "v2 installed"
    assert view.in_progress is False


def test_home_assistant_after_a_revocation_shows_the_rollback_and_why() -> None:
    # Prepare: v2 revoked, v1 serves again
    mark = RolledBack(version=2, payload_digest=DIGEST, at=0.0, revocation_digest="cd" * 32)
    record = TaskRecord(
        installed="000001-shapes-v1",
        version=1,
        payload_digest="ef" * 32,
        highest_version=2,
        rolled_back=(mark,),
    )
    # Execute
    view = home_assistant_view(
        _retained(_reporter(record), online=False), device_id="c1", task="shapes"
    )
    # Assert
    assert view.installed_version == view.latest_version == "shapes@1"
    assert view.state == "off" and view.available is False
    assert view.release_summary == (
        "v1 installed; v2 revoked by the builder at 1970-01-01 00:00 UTC"
    )


def test_home_assistant_without_an_entity_config_shows_no_entity() -> None:
    # Execute
    view = home_assistant_view({}, device_id="f1", task="shapes")
    # Assert
    assert not view.present
    assert view.entity_topic == entity_topic("f1", "shapes")
    assert view.installed_version is None


def test_home_assistant_after_revoking_the_only_version_shows_none_and_why() -> None:
    # Prepare: v1 revoked, nothing left; the entity config stays retained
    mark = RolledBack(version=1, payload_digest=DIGEST, at=0.0, revocation_digest="cd" * 32)
    record = TaskRecord(highest_version=1, highest_digest=DIGEST, rolled_back=(mark,))
    # Execute
    view = home_assistant_view(_retained(_reporter(record)), device_id="c1", task="shapes")
    # Assert
    assert view.present
    assert (view.installed_version, view.latest_version, view.state) == ("none", "none", "off")
    assert view.release_summary == (
        "no version installed; v1 revoked by the builder at 1970-01-01 00:00 UTC"
    )
