"""Golden payloads: committed, signed files that must keep decoding to the same contents.

tests/data/golden_payload.cbor (the encoder's choice) and golden_payload_<codec>.cbor (one per
codec) were signed once with a throw-away key whose public half is golden_public.pem; their
expected contents are in golden_payload.json. If one of these tests fails, the wire format changed:
bump FORMAT_VERSION or keep the old decoder, never regenerate the files to make the test pass.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from plada.codecs import CODECS
from plada.payload import TaskPayload, decode_payload, inspect_payload, payload_digest
from plada.signing import load_trusted_keys

DATA = Path(__file__).resolve().parents[2] / "data"
EXPECTED: dict[str, Any] = json.loads((DATA / "golden_payload.json").read_text(encoding="utf-8"))


def _content(payload: TaskPayload) -> dict[str, Any]:
    prov = payload.provenance
    return {
        "task": payload.task,
        "version": payload.version,
        "class_names": list(payload.class_names),
        "corpus": {"fingerprint": payload.corpus.fingerprint, "size": payload.corpus.size},
        "indices": payload.indices.tolist(),
        "labels": payload.labels.tolist(),
        "provenance": {
            "builder_version": prov.builder_version,
            "strategy": prov.strategy,
            "params": dict(sorted(prov.params.items())),
            "accuracy_estimate": prov.accuracy_estimate,
            "created_at": prov.created_at,
            "expires_at": prov.expires_at,
            "note": prov.note,
        },
    }


def test_golden_files_cover_every_codec() -> None:
    codecs = {entry["codec"] for entry in EXPECTED["files"].values()}
    assert codecs == set(CODECS)


@pytest.mark.parametrize("name", sorted(EXPECTED["files"]))
def test_golden_payload_decodes_to_expected_contents(name: str) -> None:
    # Prepare
    data = (DATA / name).read_bytes()
    trusted = load_trusted_keys([DATA / "golden_public.pem"])
    # Execute
    payload = decode_payload(data, trusted_keys=trusted, now=1_800_000_000)
    info = inspect_payload(data, trusted_keys=trusted, now=1_800_000_000)
    # Assert
    assert _content(payload) == EXPECTED["content"]
    assert info.signature == "valid"
    assert info.key_id == EXPECTED["key_id"]
    assert info.codec == EXPECTED["files"][name]["codec"]
    assert payload_digest(data) == EXPECTED["files"][name]["payload_digest"]
