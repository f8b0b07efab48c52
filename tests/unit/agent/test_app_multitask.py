"""agent.app with several tasks: the task bound refused and reported (never a task dropped), a
retirement received and applied, a payload on another task's topic refused; fake link, real
payloads, signatures and model store."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.app import AgentApp
from agent.models import ModelStore
from plada.chunks import split_payload
from plada.payload import payload_digest
from plada.tombstone import encode_tombstone, make_tombstone
from plada.topics import TopicScheme
from tools.fleet_harness import (
    FakeApplier,
    FakeLink,
    make_config,
    make_keys,
    make_payload_bytes,
    run_app_until,
)

TOPICS = TopicScheme()


def _tasks(app: AgentApp) -> dict[str, str]:
    return {t: s["state"] for t, s in app.status.to_dict()["tasks"].items()}


def test_task_bound_refuses_then_a_retirement_makes_room(tmp_path: Path) -> None:
    # Prepare: a device that holds one task
    keys = make_keys(tmp_path / "keys")
    config = make_config(tmp_path, public_key=keys.public_path, extra={"state": {"max_tasks": 1}})
    link = FakeLink()
    applier = FakeApplier([keys.public_path])
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    shapes = make_payload_bytes(keys, task="shapes")
    bins = make_payload_bytes(keys, task="bins", num_classes=2, seed=1)
    link.deliver(TOPICS.task("lab", "shapes"), shapes)
    link.deliver(TOPICS.task("lab", "bins"), bins)
    # Execute: the second task is refused; the first is retired; bins is delivered again
    run_app_until(app, lambda: _tasks(app).get("bins") == "error")
    refused = app.status.last_error
    tomb = encode_tombstone(make_tombstone("shapes", 1), signing_key=keys.private)
    link.deliver(TOPICS.task_retired("lab", "shapes"), tomb)
    link.deliver(TOPICS.task("lab", "bins"), bins)  # the retained copy, at the next connect
    app.stop.clear()
    run_app_until(app, lambda: _tasks(app) == {"bins": "ready", "shapes": "retired"})
    # Assert
    assert refused is not None and refused.code == "TaskLimitError" and refused.task == "bins"
    assert applier.applied == [payload_digest(shapes), payload_digest(bins)]
    assert [m.task for m in ModelStore(config.state.dir).installed()] == ["bins"]
    assert payload_digest(bins) not in app.state.rejected  # refused, not remembered
    assert (TOPICS.result("dev-1", "shapes"), b"") in link.published  # its result cleared


def test_payload_on_another_tasks_topic_and_forged_retirement_are_refused(
    tmp_path: Path,
) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    stranger = make_keys(tmp_path / "stranger")
    config = make_config(tmp_path, public_key=keys.public_path)
    link = FakeLink()
    applier = FakeApplier([keys.public_path])
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    shapes = make_payload_bytes(keys, task="shapes")
    forged = encode_tombstone(make_tombstone("shapes", 1), signing_key=stranger.private)
    unsigned = encode_tombstone(make_tombstone("shapes", 1), signing_key=None)
    link.deliver(TOPICS.task("lab", "bins"), shapes)  # shapes on bins' topic
    link.deliver(TOPICS.task("lab", "shapes"), shapes)
    link.deliver(TOPICS.task_retired("lab", "shapes"), forged)
    link.deliver(TOPICS.task_retired("lab", "shapes"), unsigned)
    # Execute
    run_app_until(app, lambda: app.status.rejected_count >= 3)
    # Assert
    codes = [f["code"] for f in app.status.recent_faults]
    assert codes == ["TaskTopicError", "PayloadSignatureError", "PayloadSignatureError"]
    assert applier.applied == [payload_digest(shapes)]
    assert [m.task for m in ModelStore(config.state.dir).installed()] == ["shapes"]
    assert _tasks(app)["shapes"] == "ready"
    assert payload_digest(shapes) not in app.state.rejected  # the misplaced copy shut out nothing


def test_chunked_payload_on_another_tasks_topics_is_refused_and_not_remembered(
    tmp_path: Path,
) -> None:
    # Prepare: shapes' chunks on bins' topics, then on its own
    keys = make_keys(tmp_path / "keys")
    config = make_config(tmp_path, public_key=keys.public_path)
    link = FakeLink()
    applier = FakeApplier([keys.public_path], size=100_000)
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    shapes = make_payload_bytes(keys, task="shapes", k=3000, size=100_000)
    parts = split_payload(shapes, max_chunk_bytes=1024)
    for task in ("bins", "shapes"):
        link.deliver(TOPICS.task_manifest("lab", task), parts.manifest)
        for i, chunk in enumerate(parts.chunks):
            link.deliver(TOPICS.task_chunk("lab", i, task), chunk)
    # Execute
    run_app_until(app, lambda: bool(applier.applied))
    # Assert
    assert [f["code"] for f in app.status.recent_faults] == ["TaskTopicError"]
    assert applier.applied == [payload_digest(shapes)]
