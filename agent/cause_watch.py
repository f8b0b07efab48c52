"""Notices when a device fault's cause may be gone: a file it came from changed.

After a corrupt corpus image or a damaged encoder file, the operator restores the file; the daemon
compares (mtime, size) of the corpus shards and encoder files every `interval_s` and retries the
deferred tasks at once instead of waiting out the back-off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

Signature = tuple[tuple[str, int, int], ...]


class CauseWatch:
    def __init__(
        self,
        paths: Callable[[], list[Path]],
        *,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._paths = paths
        self._interval_s = interval_s
        self._clock = clock
        self._last_check = float("-inf")
        self._seen: Signature | None = None

    def changed(self, *, armed: bool) -> bool:
        """True when, since the last check, a watched file changed. `armed`: whether anything
        waits for a fix (no deferred task: nothing to watch, and the baseline is forgotten)."""
        now = self._clock()
        if now - self._last_check < self._interval_s:
            return False
        self._last_check = now
        if not armed:
            self._seen = None
            return False
        signature = _signature(self._paths())
        changed = self._seen is not None and signature != self._seen
        self._seen = signature
        return changed


def _signature(paths: list[Path]) -> Signature:
    out = []
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            out.append((str(path), -1, -1))
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)
