"""A process's own peak memory, not the size of the process that spawned it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]


def peak_of_a_child_of_a_large_process(code: str) -> float:
    """What `code` prints in a child spawned while this process holds 400 MB more than the
    child will (ru_maxrss of such a child starts from this size: a bench spawning
    `plada-build task` charged each build 3.7 GB)."""
    held = np.ones(400 * 2**20 // 8)
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert held.sum() > 0
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_child_of_a_large_process_reports_its_own_peak() -> None:
    code = "from plada.process_memory import own_peak_mb; print(own_peak_mb())"
    assert peak_of_a_child_of_a_large_process(code) < 300
