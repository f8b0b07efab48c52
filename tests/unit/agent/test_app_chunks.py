"""agent.app tells the link exactly which chunk topics it is missing: after a manifest, after each
chunk, after a restart with a partial download on disk, and when a new manifest supersedes one."""

from __future__ import annotations

import threading
from pathlib import Path

from agent.app import AgentApp
from plada.chunks import split_payload
from plada.payload import payload_digest
from tools.fleet_harness import (
    FakeApplier,
    FakeLink,
    make_config,
    make_keys,
    make_payload_bytes,
    run_app_until,
)

BASE = "plada/group/lab/tasks/shapes"
BIG = 100_000  # corpus size for payloads large enough to chunk


def _chunk_topics(indices: range | list[int]) -> set[str]:
    return {f"{BASE}/chunk/{i}" for i in indices}


def test_app_subscribes_missing_chunks_and_resumes_them_after_a_restart(tmp_path: Path) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    config = make_config(tmp_path, public_key=keys.public_path)
    applier = FakeApplier([keys.public_path], size=BIG)
    data = make_payload_bytes(keys, k=3000, size=BIG)
    split = split_payload(data, max_chunk_bytes=1024)
    count = len(split.chunks)
    link = FakeLink()
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    link.deliver(f"{BASE}/manifest", split.manifest)
    link.deliver(f"{BASE}/chunk/0", split.chunks[0])
    # Execute: the first run holds the manifest and chunk 0; a second run starts from disk
    run_app_until(app, lambda: len(link.acked) == 2)
    after_first = set(link.wanted_chunks)
    restarted = FakeLink()
    again = AgentApp(config, link=restarted, applier=applier, stop=threading.Event())
    run_app_until(again, lambda: restarted.resyncs > 0)
    after_restart = set(restarted.wanted_chunks)
    for index in range(1, count):
        restarted.deliver(f"{BASE}/chunk/{index}", split.chunks[index])
    again.stop.clear()
    run_app_until(again, lambda: bool(applier.applied))
    # Assert
    assert count >= 3
    assert after_first == after_restart == _chunk_topics(range(1, count))
    assert applier.applied == [payload_digest(data)] and restarted.wanted_chunks == set()


def test_a_new_manifest_replaces_the_chunks_asked_for(tmp_path: Path) -> None:
    # Prepare: v1 is being assembled (chunk 0 held) when v2's manifest comes
    keys = make_keys(tmp_path / "keys")
    config = make_config(tmp_path, public_key=keys.public_path)
    applier = FakeApplier([keys.public_path], size=BIG)
    v1 = split_payload(make_payload_bytes(keys, version=1, k=3000, size=BIG), max_chunk_bytes=1024)
    v2_data = make_payload_bytes(keys, version=2, k=1000, size=BIG)
    v2 = split_payload(v2_data, max_chunk_bytes=1024)
    link = FakeLink()
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    link.deliver(f"{BASE}/manifest", v1.manifest)
    link.deliver(f"{BASE}/chunk/0", v1.chunks[0])
    link.deliver(f"{BASE}/manifest", v2.manifest)
    # Execute
    run_app_until(app, lambda: len(link.acked) == 3)
    wanted = set(link.wanted_chunks)
    for index, chunk in enumerate(v2.chunks):
        link.deliver(f"{BASE}/chunk/{index}", chunk)
    app.stop.clear()
    run_app_until(app, lambda: bool(applier.applied))
    # Assert: every chunk of v2 asked for (v1's chunk 0 is not v2's); v1's folder is gone
    assert len(v1.chunks) > len(v2.chunks)
    assert wanted == _chunk_topics(range(len(v2.chunks)))
    assert applier.applied == [payload_digest(v2_data)]
    assert [p.name for p in (config.state.dir / "fleet" / "chunks").iterdir()] == []
