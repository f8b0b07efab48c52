"""The build report's peak memory is the build's own."""

from __future__ import annotations

import sys

import pytest

from tests.unit.plada.test_process_memory import peak_of_a_child_of_a_large_process


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_a_build_spawned_by_a_large_process_reports_its_own_peak() -> None:
    code = "from builder.pipeline.report import peak_rss_mb; print(peak_rss_mb())"
    assert peak_of_a_child_of_a_large_process(code) < 300
