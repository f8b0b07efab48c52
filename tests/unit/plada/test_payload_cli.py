"""`plada payload inspect` and `plada keys generate`."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import cbor2
import pytest

from plada.cli import main
from plada.payload import encode_payload
from plada.signing import load_private_key
from tests.unit.plada.payload_helpers import make_payload

REQUIRED_KEYS = {
    "task",
    "version",
    "num_classes",
    "class_names",
    "class_counts",
    "num_indices",
    "corpus_fingerprint",
    "corpus_size",
    "codec",
    "bytes_total",
    "signature",
}


@pytest.fixture
def signed_file(tmp_path: Path) -> tuple[Path, Path]:
    assert main(["keys", "generate", "--out", str(tmp_path / "keys")]) == 0
    key = load_private_key(tmp_path / "keys" / "private.pem")
    path = tmp_path / "task.cbor"
    path.write_bytes(encode_payload(make_payload(k=60, num_classes=3), signing_key=key))
    return path, tmp_path / "keys" / "public.pem"


def test_keys_generate_writes_private_key_0600(tmp_path: Path) -> None:
    assert main(["keys", "generate", "--out", str(tmp_path)]) == 0
    assert stat.S_IMODE((tmp_path / "private.pem").stat().st_mode) == 0o600
    assert main(["keys", "generate", "--out", str(tmp_path)]) == 1  # refuses to overwrite


def test_inspect_json_has_contract_keys(
    signed_file: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    path, public = signed_file
    capsys.readouterr()
    # Execute
    code = main(["payload", "inspect", str(path), "--trusted-key", str(public), "--json"])
    # Assert
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert REQUIRED_KEYS <= set(doc)
    assert doc["signature"] == "valid"
    assert doc["num_indices"] == 60 == sum(doc["class_counts"])
    assert doc["bytes_total"] == path.stat().st_size


@pytest.mark.parametrize(
    ("with_key", "forge", "status"),
    [(False, False, "unknown-key"), (True, True, "invalid")],
)
def test_inspect_reports_bad_signature_without_failing(
    signed_file: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    with_key: bool,
    forge: bool,
    status: str,
) -> None:
    path, public = signed_file
    if forge:
        env = cbor2.loads(path.read_bytes())
        env["signature"] = bytes(64)
        path.write_bytes(cbor2.dumps(env, canonical=True))
    capsys.readouterr()
    args = ["payload", "inspect", str(path), "--json"]
    code = main(args + (["--trusted-key", str(public)] if with_key else []))
    assert code == 0
    assert json.loads(capsys.readouterr().out)["signature"] == status


def test_inspect_human_summary_names_task_and_signature(
    signed_file: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = signed_file
    capsys.readouterr()
    assert main(["payload", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "digits v3" in out
    assert "unknown-key" in out


def test_inspect_fails_cleanly_on_garbage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "junk.cbor"
    path.write_bytes(b"\xff\x00junk")
    assert main(["payload", "inspect", str(path)]) == 1
    assert "junk.cbor" in capsys.readouterr().err
    assert main(["payload", "inspect", str(tmp_path / "missing.cbor")]) == 2
