"""bench.peak_memory: a module's peak is its own, not the run's so far, and a child counts only
when it raised the maximum."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench._common import ROOT
from bench.peak_memory import CLEAR_REFS

# Run in a fresh interpreter: the children figure is the largest child a process has ever
# waited for, so in the test session's own process earlier tests' children would hide these.
SCENARIO = """
import json, subprocess, sys
import numpy as np
from bench.peak_memory import PeakMeter

ALLOCATE = "import numpy as np; a = np.ones({mb} * 2**20 // 8); print(a.sum())"
meter = PeakMeter()
meter.start()                      # a module that touches 300 MB, then frees it
big = np.ones(300 * 2**20 // 8)
first = meter.stop()
del big
meter.start()                      # one that allocates little here and runs a 400 MB child
small = np.ones(2**20)
subprocess.run([sys.executable, "-c", ALLOCATE.format(mb=400)], check=True, capture_output=True)
second = meter.stop()
meter.start()                      # one whose child is smaller than the largest so far
subprocess.run([sys.executable, "-c", ALLOCATE.format(mb=50)], check=True, capture_output=True)
third = meter.stop()
print(json.dumps([[p.own_mb, p.child_mb, p.own_reset, p.peak_mb] for p in (first, second, third)]))
"""


@pytest.mark.skipif(not CLEAR_REFS.exists(), reason="needs Linux /proc/self/clear_refs")
def test_a_module_is_charged_its_own_peak_and_the_child_that_raised_the_maximum() -> None:
    # Execute: three modules in a fresh interpreter
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO], check=True, capture_output=True, text=True, cwd=ROOT
    )
    first, second, third = json.loads(done.stdout)
    # Assert
    assert first[2] and second[2]  # the high-water mark was reset before each module
    assert first[0] >= 300
    assert second[0] < first[0] - 250  # the reset dropped the first module's peak
    assert second[1] is not None and second[1] >= 400
    assert second[3] == second[1]
    assert third[1] is None  # cannot tell its child apart from the larger earlier one


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
