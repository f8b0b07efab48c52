"""agent.app: the daemon loop with a fake link and a fake applier (real payloads and signatures)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.app import AgentApp, FleetState
from plada.chunks import split_payload
from plada.payload import payload_digest
from tools.fleet_harness import (
    FakeApplier,
    FakeLink,
    Keys,
    make_config,
    make_keys,
    make_payload_bytes,
    run_app_until,
)

TASK_TOPIC = "plada/group/lab/task"
STATUS_TOPIC = "plada/device/dev-1/status"


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


def _app(
    tmp_path: Path,
    keys: Keys,
    link: FakeLink,
    applier: FakeApplier | None = None,
    *,
    idle_warm_after_s: float = 60.0,
) -> AgentApp:
    config = make_config(
        tmp_path, public_key=keys.public_path, mqtt={"idle_warm_after_s": idle_warm_after_s}
    )
    return AgentApp(
        config,
        link=link,
        applier=applier or FakeApplier([keys.public_path]),
        stop=threading.Event(),
    )


def _status(link: FakeLink) -> dict[str, object]:
    body = link.last(STATUS_TOPIC)
    assert body is not None
    loaded: dict[str, object] = json.loads(body)
    return loaded


def test_app_applies_task_reports_ready_and_result(tmp_path: Path, keys: Keys) -> None:
    # Prepare
    link = FakeLink()
    app = _app(tmp_path, keys, link)
    data = make_payload_bytes(keys, version=2)
    mid = link.deliver(TASK_TOPIC, data)
    # Execute
    run_app_until(app, lambda: link.last("plada/device/dev-1/result/shapes") is not None)
    # Assert
    status = _status(link)
    result_body = link.last("plada/device/dev-1/result/shapes")
    assert result_body is not None
    result = json.loads(result_body)
    assert status["state"] == "ready"
    assert status["installed_version"] == "shapes@2"
    assert result["payload_id"] == payload_digest(data)
    assert result["bytes_received"] == len(data)
    assert result["num_indices"] == 40
    assert mid in link.acked
    assert app.triallog.task_summary(payload_digest(data)) is not None


def test_app_same_payload_twice_trains_once(tmp_path: Path, keys: Keys) -> None:
    # Prepare
    link = FakeLink()
    applier = FakeApplier([keys.public_path])
    app = _app(tmp_path, keys, link, applier)
    data = make_payload_bytes(keys)
    first, second = link.deliver(TASK_TOPIC, data), link.deliver(TASK_TOPIC, data)
    # Execute
    run_app_until(app, lambda: second in link.acked)
    # Assert
    assert applier.applied == [payload_digest(data)]
    assert {first, second} <= set(link.acked)


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("older", "TaskRejectedError"),
        ("same-version-other-content", "TaskRejectedError"),
        ("unsigned", "PayloadSignatureError"),
        ("tampered", "PayloadSignatureError"),
        ("expired", "PayloadExpiredError"),
        ("wrong-corpus", "PayloadCorpusError"),
        ("garbage", "PayloadDecodeError"),
    ],
)
def test_app_rejects_bad_payloads_and_keeps_running(
    tmp_path: Path, keys: Keys, case: str, code: str
) -> None:
    # Prepare
    link = FakeLink()
    applier = FakeApplier([keys.public_path])
    app = _app(tmp_path, keys, link, applier)
    good = make_payload_bytes(keys, version=5)
    makers: dict[str, Callable[[], bytes]] = {
        "older": lambda: make_payload_bytes(keys, version=4),
        "same-version-other-content": lambda: make_payload_bytes(keys, version=5, seed=9),
        "unsigned": lambda: make_payload_bytes(None, version=6),
        "tampered": lambda: good[:-80] + bytes([good[-80] ^ 1]) + good[-79:],
        "expired": lambda: make_payload_bytes(keys, version=6, expires_at=1_000),
        "wrong-corpus": lambda: make_payload_bytes(keys, version=6, fingerprint="ef" * 32),
        "garbage": lambda: b"\x00not cbor",
    }
    bad = makers[case]()
    newer = make_payload_bytes(keys, version=7)
    link.deliver(TASK_TOPIC, good)
    link.deliver(TASK_TOPIC, bad)
    last = link.deliver(TASK_TOPIC, newer)

    def done() -> bool:
        return last in link.acked and applier.applied[-1:] == [payload_digest(newer)]

    # Execute
    thread = run_app_until(app, done)
    # Assert
    statuses = [json.loads(body) for topic, body in link.published if topic == STATUS_TOPIC]
    seen_error = [s["last_error"] for s in statuses if s["state"] == "error"]
    assert not thread.is_alive()
    assert seen_error, "the rejection never showed in status"
    error = seen_error[0]
    assert isinstance(error, dict) and error["code"] == code
    assert applier.applied == [payload_digest(good), payload_digest(newer)]
    assert _status(link)["installed_version"] == "shapes@7"
    outcomes = {s.outcome for s in app.triallog.task_summaries()}
    assert outcomes == {"ready", "rejected"}


def test_app_reassembles_chunks_in_any_order_and_resumes_after_restart(
    tmp_path: Path, keys: Keys
) -> None:
    # Prepare: a payload cut into small chunks; the first run sees half of them.
    data = make_payload_bytes(keys, k=3000, size=100_000)
    chunked = split_payload(data, max_chunk_bytes=1024)
    assert len(chunked.chunks) >= 3
    link = FakeLink()
    app = _app(tmp_path, keys, link, FakeApplier([keys.public_path], size=100_000))
    half = len(chunked.chunks) // 2
    for i in reversed(range(half)):
        link.deliver(f"{TASK_TOPIC}/chunk/{i}", chunked.chunks[i])
    link.deliver(f"{TASK_TOPIC}/manifest", chunked.manifest)
    last_mid = link.deliver(f"{TASK_TOPIC}/chunk/0", chunked.chunks[0])  # duplicate
    run_app_until(app, lambda: last_mid in link.acked)
    assert json.loads(link.last(STATUS_TOPIC) or b"{}")["state"] == "receiving"
    # Execute: a restarted agent gets only the rest
    link2 = FakeLink()
    applier2 = FakeApplier([keys.public_path], size=100_000)
    app2 = _app(tmp_path, keys, link2, applier2)
    for i in range(half, len(chunked.chunks)):
        link2.deliver(f"{TASK_TOPIC}/chunk/{i}", chunked.chunks[i])
    run_app_until(app2, lambda: bool(applier2.applied))
    # Assert
    assert applier2.applied == [payload_digest(data)]
    summary = app2.triallog.task_summary(payload_digest(data))
    assert summary is not None
    assert summary.messages == len(chunked.chunks) + 2  # + manifest + duplicate
    assert not any((tmp_path / "dev-1/state/fleet/chunks").iterdir())


def test_app_resumes_pending_task_after_crash_exactly_once(tmp_path: Path, keys: Keys) -> None:
    # Prepare: the first run "dies" during training (the applier raises SystemExit).
    data = make_payload_bytes(keys)
    link = FakeLink()

    def die() -> None:
        raise SystemExit("killed mid-training")

    app = _app(tmp_path, keys, link, FakeApplier([keys.public_path], before_train=die))
    mid = link.deliver(TASK_TOPIC, data)
    with pytest.raises(SystemExit):
        app.run()
    state = FleetState.load(tmp_path / "dev-1/state/fleet/state.json")
    assert state.pending is not None and mid in link.acked  # recorded durably, then acked
    # Execute: restart; the broker redelivers the retained payload too
    link2 = FakeLink()
    applier2 = FakeApplier([keys.public_path])
    app2 = _app(tmp_path, keys, link2, applier2)
    again = link2.deliver(TASK_TOPIC, data)
    run_app_until(app2, lambda: again in link2.acked and bool(applier2.applied))
    # Assert
    assert applier2.applied == [payload_digest(data)]
    assert FleetState.load(tmp_path / "dev-1/state/fleet/state.json").pending is None


def test_app_does_not_retrain_when_model_was_stored_before_crash(
    tmp_path: Path, keys: Keys
) -> None:
    # Prepare: pending recorded, but the model store already holds this payload's model.
    data = make_payload_bytes(keys)
    link = FakeLink()
    app = _app(tmp_path, keys, link)
    app._offer(data, first_byte_at=1.0)
    applier = FakeApplier([keys.public_path], applied=[payload_digest(data)])
    link2 = FakeLink()
    app2 = _app(tmp_path, keys, link2, applier)
    # Execute
    run_app_until(app2, lambda: link2.last("plada/device/dev-1/result/shapes") is not None)
    # Assert
    assert applier.applied == [payload_digest(data)]
    result = json.loads(link2.last("plada/device/dev-1/result/shapes") or b"{}")
    assert result["extra"]["resumed_after_restart"] is True


def test_app_warms_cache_when_idle_then_stops_asking(tmp_path: Path, keys: Keys) -> None:
    # Prepare
    link = FakeLink()
    applier = FakeApplier([keys.public_path])
    app = _app(tmp_path, keys, link, applier, idle_warm_after_s=0.3)
    quiet = _app(tmp_path / "quiet", keys, FakeLink(), FakeApplier([keys.public_path]))
    # Execute
    run_app_until(app, lambda: False, timeout_s=2.0)  # ~6 idle ticks after the first 0.3 s
    run_app_until(quiet, lambda: False, timeout_s=0.6)
    # Assert: three calls, then warm_step said there is nothing left, so no more calls; an agent
    # that has not been quiet for idle_warm_after_s does no idle work at all
    assert applier.warm_calls == 3
    assert isinstance(quiet.applier, FakeApplier) and quiet.applier.warm_calls == 0


def test_app_republishes_results_after_reconnect(tmp_path: Path, keys: Keys) -> None:
    # Prepare: one task applied in a first run
    link = FakeLink()
    app = _app(tmp_path, keys, link)
    link.deliver(TASK_TOPIC, make_payload_bytes(keys))
    result_topic = "plada/device/dev-1/result/shapes"
    run_app_until(app, lambda: link.last(result_topic) is not None)
    # Execute: a restart with nothing new to do
    link2 = FakeLink()
    run_app_until(_app(tmp_path, keys, link2), lambda: link2.last(result_topic) is not None)
    # Assert
    assert link2.last(result_topic) == link.last(result_topic)


def test_app_retries_after_a_device_side_failure(tmp_path: Path, keys: Keys) -> None:
    # Prepare: the first attempt fails on the device (e.g. the corpus folder is missing)
    from agent.errors import ConfigError

    def broken() -> None:
        raise ConfigError("corpus.path: folder missing")

    link = FakeLink()
    applier = FakeApplier([keys.public_path], before_train=broken)
    app = _app(tmp_path, keys, link, applier)
    data = make_payload_bytes(keys)
    first = link.deliver(TASK_TOPIC, data)
    # Execute: the operator fixes the device; the retained task is delivered again
    run_app_until(app, lambda: first in link.acked and app.status.last_error is not None)
    applier.before_train = None
    link2 = FakeLink()
    app2 = _app(tmp_path, keys, link2, applier)
    link2.deliver(TASK_TOPIC, data)
    run_app_until(app2, lambda: bool(applier.applied))
    # Assert
    assert applier.applied == [payload_digest(data)]
    outcomes = [s.outcome for s in app2.triallog.task_summaries()]
    assert outcomes == ["ready"]
