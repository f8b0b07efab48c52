from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from plada.atomic import atomic_path, save_npy_atomic, write_bytes_atomic, write_text_atomic


def test_write_bytes_atomic_replaces_and_sets_mode(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "key.pem"
    path.write_bytes(b"old")
    # Execute
    write_bytes_atomic(path, b"new", mode=0o600)
    # Assert
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["key.pem"]


def test_save_npy_atomic_round_trips(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npy_atomic(tmp_path / "a.npy", array)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), array)


def test_atomic_path_failure_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "state.json"
    write_text_atomic(path, "old")
    # Execute
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("crash mid-write")
    # Assert
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]
