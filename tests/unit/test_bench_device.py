"""bench.device's TFLite step: reuse an export, make one in the litert-torch environment's child
process, or say honestly why TFLite is not measured (and how to get it)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from bench.device import LITERT_PYTHON_ENV, ensure_tflite, litert_python


def _fake_python(tmp_path: Path, body: str) -> Path:
    """An executable standing in for .venv-litert/bin/python: a shell script."""
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_an_existing_export_is_measured_without_the_environment(tmp_path: Path) -> None:
    # Prepare
    (tmp_path / "lite0-64.tflite").write_bytes(b"tflite")
    # Execute
    path, note = ensure_tflite(tmp_path, None)
    # Assert
    assert (path, note) == (tmp_path / "lite0-64.tflite", "measured")


def test_without_the_environment_the_note_says_how_to_get_it(tmp_path: Path) -> None:
    # Execute
    path, note = ensure_tflite(tmp_path, None)
    # Assert
    assert path is None
    assert note.startswith("not measured:") and "make setup-litert" in note


def test_the_child_export_runs_with_the_litert_python(tmp_path: Path) -> None:
    # Prepare: the child records its arguments and writes the file, as the real export would
    enc = tmp_path / "enc"
    enc.mkdir()
    python = _fake_python(tmp_path, f'echo "$@" > {tmp_path}/args; touch {enc}/lite0-64.tflite')
    # Execute
    path, note = ensure_tflite(enc, python)
    # Assert
    assert (path, note) == (enc / "lite0-64.tflite", "measured")
    args = (tmp_path / "args").read_text(encoding="utf-8").split()
    assert args[:3] == ["-m", "builder.cli", "export-encoder"]
    assert "--tflite-only" in args and args[args.index("--out") + 1] == str(enc)


def test_a_failed_child_export_is_reported_with_its_last_line(tmp_path: Path) -> None:
    # Prepare
    python = _fake_python(tmp_path, 'echo "plada-build export-encoder: parity failed" >&2; exit 1')
    # Execute
    path, note = ensure_tflite(tmp_path, python)
    # Assert
    assert path is None
    assert "failed (exit 1): plada-build export-encoder: parity failed" in note
    assert (tmp_path / "lite0-64.tflite.log").is_file()


def test_a_given_litert_python_wins_and_a_missing_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    missing = tmp_path / "nowhere" / "python"
    monkeypatch.setenv(LITERT_PYTHON_ENV, str(missing))
    # Execute
    path, note = ensure_tflite(tmp_path, litert_python())
    # Assert
    assert path is None
    assert note == f"not measured: {LITERT_PYTHON_ENV}={missing} does not exist"
