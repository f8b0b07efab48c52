"""bench.peak_memory: a module's peak is its own, not the run's so far, and a child counts only
when it raised the maximum."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from bench.peak_memory import CLEAR_REFS, PeakMeter

ALLOCATE = "import numpy as np; a = np.ones({mb} * 2**20 // 8); print(a.sum())"


@pytest.mark.skipif(not CLEAR_REFS.exists(), reason="needs Linux /proc/self/clear_refs")
def test_a_module_is_charged_its_own_peak_and_the_child_that_raised_the_maximum() -> None:
    # Prepare: a first module that touches 300 MB, then frees it
    meter = PeakMeter()
    meter.start()
    big = np.ones(300 * 2**20 // 8)
    big_peak = meter.stop()
    del big
    # Execute: a second module that allocates little here and runs a 400 MB child
    meter.start()
    small = np.ones(2**20)
    subprocess.run([sys.executable, "-c", ALLOCATE.format(mb=400)], check=True, capture_output=True)
    small_peak = meter.stop()
    # Execute: a third whose child is smaller than the largest one so far
    meter.start()
    subprocess.run([sys.executable, "-c", ALLOCATE.format(mb=50)], check=True, capture_output=True)
    third = meter.stop()
    # Assert
    assert big_peak.own_reset and small_peak.own_reset
    assert big_peak.own_mb >= 300
    assert small_peak.own_mb < big_peak.own_mb - 250  # the reset dropped the first module's peak
    assert small_peak.child_mb is not None and small_peak.child_mb >= 400
    assert small_peak.peak_mb == small_peak.child_mb
    assert third.child_mb is None  # cannot tell its child apart from the larger earlier one
    assert small.sum() == 2**20


def test_the_header_names_each_module_peak_and_the_largest() -> None:
    # Prepare
    from bench.render.header import header_lines
    from bench.schema.system import RunMeta

    meta = RunMeta(timings={"codec": 20.0, "accuracy": 3600.0},
                   peak_rss_mb={"codec": 512.0, "accuracy": 4300.0})  # fmt: skip
    # Execute
    text = "\n".join(header_lines(meta))
    # Assert
    assert "codec 0.50, accuracy 4.20" in text
    assert "the largest, accuracy, **4.20 GB**" in text
    assert "Peak resident memory" not in "\n".join(header_lines(RunMeta()))
