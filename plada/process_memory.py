"""This process's peak resident memory, counted from its own pages."""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

_STATUS = Path("/proc/self/status")


def own_peak_mb() -> float:
    """Peak resident set of this process in MB: VmHWM, the high-water mark of its own address
    space. ru_maxrss only where /proc is missing: on Linux it starts from the parent's size at
    fork + exec, so a CLI spawned by a 4 GB process reported 4 GB whatever it used itself."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in _STATUS.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
