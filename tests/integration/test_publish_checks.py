"""`plada-build publish` keeps the group's retained task good (issue 14, item 11): nothing a
device would refuse, and no older version than the retained one, replaces it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder.cli import main as build_main
from builder.fleet.session import BrokerSession
from plada.chunks import Reassembler
from plada.payload import PayloadInfo, inspect_payload, payload_digest
from plada.topics import TopicKind, TopicScheme
from tools.devbroker import Broker
from tools.fleet_harness import admin_options, make_keys, make_payload_bytes

pytestmark = pytest.mark.broker

BIG = 100_000  # corpus size for payloads large enough to chunk


def _retained(broker: Broker) -> PayloadInfo | None:
    """The payload retained for task shapes in group lab (whole or chunked, on the task's own
    topics), decoded; None if there is none."""
    topics = TopicScheme()
    with BrokerSession(admin_options(broker)) as session:
        retained = session.collect_retained(topics.task_filter("lab", "shapes"), quiet_s=0.3)
    reassembler = Reassembler()
    for topic, body in sorted(retained.items()):
        parsed = topics.parse(topic)
        kind = parsed.kind if parsed else None
        if body and kind is TopicKind.TASK:
            return inspect_payload(body, trusted_keys={})
        if body and kind is TopicKind.MANIFEST:
            reassembler.add_manifest(body)
        elif body and kind is TopicKind.CHUNK:
            reassembler.add_chunk(body)
    if not reassembler.is_complete():
        return None
    return inspect_payload(reassembler.payload(), trusted_keys={})


def test_publish_refuses_what_devices_refuse_and_older_versions(
    broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    other = make_keys(tmp_path / "other")
    files = {
        "random bytes": b"\x93\x17" * 500,
        "report.json": json.dumps({"task": "shapes", "payload_bytes": 100}).encode(),
        "unsigned": make_payload_bytes(None, version=5, k=3000, size=BIG),
        "expired": make_payload_bytes(keys, version=5, expires_at=1_000, k=3000, size=BIG),
        "unknown key": make_payload_bytes(other, version=5, k=3000, size=BIG),
        "v2": make_payload_bytes(keys, version=2, k=3000, size=BIG),
        "v1": make_payload_bytes(keys, version=1, k=3000, size=BIG),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name.replace(' ', '-')}.plada"
        paths[name].write_bytes(data)
    auth = ["--broker", broker.url, "--group", "lab", "--max-chunk-bytes", "1024"]
    if broker.secure:
        auth += ["--username", "builder", "--password-file", str(broker.password_file("builder"))]
    trust = ["--trusted-key", str(keys.public_path)]

    def publish(name: str, *extra: str) -> int:
        return build_main(["publish", str(paths[name]), *auth, *trust, *extra])

    # Execute
    first = publish("v2")
    refused = {n: publish(n) for n in ("random bytes", "report.json", "unsigned", "expired")}
    refused["unknown key"] = publish("unknown key")
    retained_after_refusals = _retained(broker)
    older = publish("v1")
    retained_after_older = _retained(broker)
    forced = publish("v1", "--force")
    err = capsys.readouterr().err
    # Assert
    assert first == 0
    assert refused == dict.fromkeys(refused, 65)
    assert older == 65 and "shapes v1 is older than the shapes v2 retained" in err
    for info in (retained_after_refusals, retained_after_older):
        assert info is not None and info.digest == payload_digest(files["v2"])
    assert forced == 0
    forced_info = _retained(broker)
    assert forced_info is not None and forced_info.payload.version == 1
