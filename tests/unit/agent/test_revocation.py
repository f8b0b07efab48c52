"""A signed revocation on a device: the revoked head goes, the previous one serves again (or
none), the version is refused afterwards, status and Home Assistant say so; forged ones are
payload faults. Fake link, real payloads, signatures and model store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from agent.app import AgentApp
from agent.errors import TaskRejectedError
from agent.models import ModelStore
from agent.versions import check_installable
from plada.payload import payload_digest
from plada.revocation import encode_revocation, make_revocation
from plada.topics import TopicScheme
from tools.fleet_harness import (
    FakeApplier,
    FakeLink,
    Keys,
    make_config,
    make_keys,
    make_payload_bytes,
    run_app_until,
)

TOPICS = TopicScheme()


def _revocation(keys: Keys, data: bytes, version: int) -> bytes:
    return encode_revocation(
        make_revocation("shapes", version, payload_digest(data)), signing_key=keys.private
    )


def _app(tmp_path: Path, keys: Keys) -> tuple[AgentApp, FakeLink, FakeApplier]:
    config = make_config(
        tmp_path, public_key=keys.public_path, mqtt={"home_assistant": True, "group": "canary"}
    )
    link = FakeLink()
    applier = FakeApplier([keys.public_path], probe=(0.5, 10))
    return AgentApp(config, link=link, applier=applier, stop=threading.Event()), link, applier


def _serving(app: AgentApp) -> int | None:
    version: int | None = app.status.to_dict()["tasks"].get("shapes", {}).get("version")
    return version


def test_revocation_rolls_back_to_the_previous_head_and_refuses_the_version(
    tmp_path: Path,
) -> None:
    # Prepare: v1 then v2 installed
    keys = make_keys(tmp_path / "keys")
    app, link, applier = _app(tmp_path, keys)
    v1, v2 = make_payload_bytes(keys, version=1), make_payload_bytes(keys, version=2, seed=2)
    link.deliver(TOPICS.task("canary", "shapes"), v1)
    link.deliver(TOPICS.task("canary", "shapes"), v2)
    run_app_until(app, lambda: _serving(app) == 2)
    # Execute: the revocation, then the revoked payload again (a late retained copy)
    link.deliver(TOPICS.task_revoked("canary", "shapes"), _revocation(keys, v2, 2))
    link.deliver(TOPICS.task("canary", "shapes"), v2)
    app.stop.clear()
    run_app_until(app, lambda: _serving(app) == 1 and app.status.rejected_count >= 1)
    status = app.status.to_dict()
    # Assert
    store = ModelStore(app.config.state.dir)
    assert [(m.task, m.version) for m in store.installed()] == [("shapes", 1)]
    record = store.task_record("shapes")
    assert record is not None and record.rolled_back[-1].revocation_digest is not None
    with pytest.raises(TaskRejectedError, match="rolled back"):
        check_installable(record, task="shapes", version=2, digest=payload_digest(v2))
    assert applier.applied.count(payload_digest(v2)) == 1  # never installed again
    assert status["group"] == "canary"
    entry = status["tasks"]["shapes"]
    assert entry["installed_version"] == entry["latest_version"] == "shapes@1"
    assert "v2 revoked by the builder" in entry["release_summary"]
    assert (TOPICS.result("dev-1", "shapes"), b"") in link.published  # v2's result withdrawn


def test_revoking_the_only_version_leaves_none_and_keeps_the_ha_entity(tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    app, link, _ = _app(tmp_path, keys)
    v1 = make_payload_bytes(keys, version=1)
    link.deliver(TOPICS.task("canary", "shapes"), v1)
    run_app_until(app, lambda: _serving(app) == 1)
    # Execute
    link.deliver(TOPICS.task_revoked("canary", "shapes"), _revocation(keys, v1, 1))
    app.stop.clear()
    run_app_until(app, lambda: "shapes" in app.status.records and _serving(app) is None)
    status = app.status.to_dict()
    # Assert: the entity stays (Home Assistant shows "none" and why: builder/fleet/home_assistant
    # renders its template, tests/unit/builder/test_rollout_record.py)
    ha_topic, config = app.status.home_assistant_task_discovery("shapes", prefix="homeassistant")
    assert link.last(ha_topic) == config  # present, not removed
    entry = status["tasks"]["shapes"]
    assert ModelStore(app.config.state.dir).installed() == []
    assert entry["installed_version"] is None and entry["latest_version"] is None
    assert entry["release_summary"].startswith("no version installed; v1 revoked by the builder")


def test_a_revocation_of_a_payload_never_received_makes_it_refused(tmp_path: Path) -> None:
    # Prepare: a late device: the revocation arrives before the payload
    keys = make_keys(tmp_path / "keys")
    app, link, applier = _app(tmp_path, keys)
    v2 = make_payload_bytes(keys, version=2)
    link.deliver(TOPICS.task_revoked("canary", "shapes"), _revocation(keys, v2, 2))
    link.deliver(TOPICS.task("canary", "shapes"), v2)
    # Execute
    run_app_until(app, lambda: app.status.rejected_count >= 1)
    # Assert
    assert applier.applied == []
    assert app.status.last_error is not None and "rolled back" in app.status.last_error.message


def test_forged_unsigned_and_misplaced_revocations_are_payload_faults(tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    stranger = make_keys(tmp_path / "stranger")
    app, link, _ = _app(tmp_path, keys)
    v1 = make_payload_bytes(keys, version=1)
    digest = payload_digest(v1)
    forged = encode_revocation(make_revocation("shapes", 1, digest), signing_key=stranger.private)
    unsigned = encode_revocation(make_revocation("shapes", 1, digest), signing_key=None)
    real = _revocation(keys, v1, 1)
    link.deliver(TOPICS.task("canary", "shapes"), v1)
    link.deliver(TOPICS.task_revoked("canary", "shapes"), forged)
    link.deliver(TOPICS.task_revoked("canary", "shapes"), unsigned)
    link.deliver(TOPICS.task_revoked("canary", "bins"), real)  # on another task's topic
    # Execute
    run_app_until(app, lambda: app.status.rejected_count >= 3)
    # Assert
    faults = [(f["code"], f["fault"]) for f in app.status.recent_faults]
    assert faults == [
        ("PayloadSignatureError", "payload"),
        ("PayloadSignatureError", "payload"),
        ("TaskTopicError", "payload"),
    ]
    assert [m.version for m in ModelStore(app.config.state.dir).installed()] == [1]
