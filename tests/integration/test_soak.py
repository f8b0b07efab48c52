"""The short soak (bench.soak, preset SHORT): 8 real agent processes, a real broker, 75 s of
chaos. No task lost or installed twice, every store consistent, every fault shown with its
cause in status and in the trial log. `make soak` runs the 20-minute, 24-agent version."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak.chaos import KINDS
from bench.soak.config import SHORT
from bench.soak.run import run_soak

pytestmark = pytest.mark.broker


def test_short_soak_loses_nothing_and_reports_every_fault(tmp_path: Path) -> None:
    # Execute
    result = run_soak(SHORT, tmp_path, log=lambda message: None)
    # Assert
    assert result["lost"] == 0, result["lost_devices"]
    assert result["duplicated"] == 0
    assert result["inconsistent_stores"] == {}
    assert result["agent_exits"] == {}
    assert result["settle_s"] is not None
    assert result["unreported"] == []
    for kind in KINDS:
        assert result["faults_exercised"][kind] >= 1, kind
        assert result["faults_reported"][kind] == result["faults_exercised"][kind], kind
    assert result["clean_exit_codes"] == [0]
