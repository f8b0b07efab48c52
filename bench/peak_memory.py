"""Peak resident memory of one `make bench` module: the bench process's own high-water mark
since the module started, and the largest child it waited for during the module.

`/usr/bin/time -v make bench` gives one number for the whole run (the largest process), which
does not say which module to make smaller. The bench process's high-water mark (VmHWM) is reset
before each module (Linux: writing 5 to /proc/self/clear_refs); children (the accuracy sweep's
forked workers, the CLIs the device benchmarks run) are known only by the largest one so far
(RUSAGE_CHILDREN), so a module is charged a child peak only when it raised that maximum. A
child's figure is the kernel's, as `/usr/bin/time` reads it: a forked worker counts the pages it
shares with this process, and an exec'd CLI starts from this process's high-water mark at the
spawn (Linux keeps the pre-exec peak), so a child figure is an upper bound of the child's own.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
from dataclasses import dataclass
from pathlib import Path

from plada.process_memory import own_peak_mb

CLEAR_REFS = Path("/proc/self/clear_refs")


def _children_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@dataclass(frozen=True)
class ModulePeak:
    own_mb: float  # the bench process, during the module (its whole life where no reset exists)
    child_mb: float | None  # the largest child waited for, when the module raised the maximum
    own_reset: bool  # False: the kernel did not reset the high-water mark (own_mb is a bound)

    @property
    def peak_mb(self) -> float:
        return max(self.own_mb, self.child_mb or 0.0)


class PeakMeter:
    """`start()` before a module, `stop()` after it."""

    def __init__(self) -> None:
        self._children = 0.0
        self._reset = False

    def start(self) -> None:
        self._children = _children_peak_mb()
        try:
            CLEAR_REFS.write_text("5", encoding="ascii")
            self._reset = True
        except OSError:  # not Linux, or no permission: the lifetime peak stands
            self._reset = False

    def stop(self) -> ModulePeak:
        children = _children_peak_mb()
        return ModulePeak(
            own_mb=round(own_peak_mb(), 1),
            child_mb=round(children, 1) if children > self._children else None,
            own_reset=self._reset,
        )


def trim_heap() -> None:
    """Collect garbage and hand the C heap's free pages back to the kernel (glibc's
    malloc_trim; elsewhere only the collection): freed NumPy buffers below the mmap threshold
    otherwise stay resident in the bench process under every later module."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # the process's own symbols: libc's
        ctypes.CDLL(None).malloc_trim(0)
