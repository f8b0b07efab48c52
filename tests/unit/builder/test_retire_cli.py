"""`plada-build retire` refuses what devices would refuse before it talks to any broker, and
names the usage and file problems with their exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cli import main
from plada.tombstone import encode_tombstone, make_tombstone
from tools.fleet_harness import make_keys, make_payload_bytes

_NO_BROKER = ["--group", "lab", "--broker", "mqtt://127.0.0.1:9"]  # nothing listens on port 9


def test_retire_refuses_unsigned_forged_and_non_tombstones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    keys = make_keys(tmp_path / "keys")
    forger = make_keys(tmp_path / "forger")
    files = {
        "unsigned": encode_tombstone(make_tombstone("bins", 1), signing_key=None),
        "forged": encode_tombstone(make_tombstone("bins", 1), signing_key=forger.private),
        "a payload": make_payload_bytes(keys),
    }
    trust = ["--trusted-key", str(keys.public_path)]
    codes = {}
    # Execute
    for name, data in files.items():
        path = tmp_path / f"{name.replace(' ', '-')}.tomb"
        path.write_bytes(data)
        codes[name] = main(["retire", "--tombstone", str(path), *_NO_BROKER, *trust])
    err = capsys.readouterr().err
    # Assert
    assert codes == {"unsigned": 65, "forged": 65, "a payload": 65}
    assert "unsigned" in err and "signature unknown-key" in err and "not a retirement" in err


def test_retire_usage_and_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Execute
    no_version = main(["retire", "bins", "--signing-key", "k.pem", *_NO_BROKER])
    both = main(["retire", "bins", "--tombstone", "t", *_NO_BROKER])
    missing_key = main(
        ["retire", "bins", "--version", "1", "--signing-key", str(tmp_path / "no.pem"), *_NO_BROKER]
    )
    missing_file = main(["retire", "--tombstone", str(tmp_path / "no.tomb"), *_NO_BROKER])
    capsys.readouterr()
    # Assert
    assert (no_version, both, missing_key, missing_file) == (2, 2, 66, 66)
