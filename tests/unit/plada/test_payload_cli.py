"""`plada payload inspect` and `plada keys generate`."""

from __future__ import annotations

import json
import stat
import tracemalloc
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
def test_inspect_reports_bad_signature_and_exits_1(
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
    assert code == 1  # shown, but a device would refuse it: scripts can gate on the code
    doc = json.loads(capsys.readouterr().out)
    assert doc["signature"] == status and doc["valid"] is False


def test_inspect_human_summary_names_task_and_signature(
    signed_file: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path, _ = signed_file
    capsys.readouterr()
    assert main(["payload", "inspect", str(path)]) == 1  # no --trusted-key: unknown-key
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


@pytest.mark.parametrize("case", ["unsigned", "expired", "unknown-key"])
def test_inspect_exit_code_gates_on_what_a_device_would_refuse(
    signed_file: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    # Prepare
    path, public = signed_file
    key = load_private_key(tmp_path / "keys" / "private.pem")
    if case == "unsigned":
        path.write_bytes(encode_payload(make_payload(), signing_key=None))
    elif case == "expired":
        path.write_bytes(encode_payload(make_payload(expires_at=1_000), signing_key=key))
    trusted = [] if case == "unknown-key" else ["--trusted-key", str(public)]
    capsys.readouterr()
    # Execute
    code = main(["payload", "inspect", str(path), "--json", *trusted])
    out = capsys.readouterr()
    # Assert: still shown, but a script sees a failure, and why
    assert code == 1
    assert json.loads(out.out)["valid"] is False
    assert "a device would refuse it" in out.err


def test_inspect_refuses_a_1_gib_file_after_one_bounded_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a sparse 1 GiB file; reading it whole cost 1.1 GB of memory
    huge = tmp_path / "huge.plada"
    with huge.open("wb") as handle:
        handle.truncate(1 << 30)
    # Execute
    tracemalloc.start()
    try:
        code = main(["payload", "inspect", str(huge)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Assert
    assert code == 1
    assert "PayloadLimitError" in capsys.readouterr().err
    assert peak < 64 * 1024 * 1024
