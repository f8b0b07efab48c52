"""CPU time and memory of a running process, read from /proc (Linux): the broker's and the
fleet workers'. No psutil: two small files per read, the same fields `top` shows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcSample:
    """One reading: CPU seconds used so far (user + system), resident and peak resident MB."""

    cpu_s: float
    rss_mb: float
    peak_rss_mb: float


def parse_stat_cpu(stat: str) -> float:
    """User + system CPU seconds from the text of /proc/<pid>/stat (fields 14 and 15; the
    command name in field 2 may hold spaces and parentheses, so split after its last ')')."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def parse_status_mb(status: str, key: str) -> float:
    """A `kB` field of /proc/<pid>/status (VmRSS, VmHWM) in MB."""
    for line in status.splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"/proc status has no {key} field")


def sample(pid: int) -> ProcSample:
    """A reading of process `pid`; OSError once it has gone."""
    proc = Path(f"/proc/{pid}")
    status = (proc / "status").read_text(encoding="utf-8")
    return ProcSample(
        cpu_s=parse_stat_cpu((proc / "stat").read_text(encoding="utf-8")),
        rss_mb=parse_status_mb(status, "VmRSS"),
        peak_rss_mb=parse_status_mb(status, "VmHWM"),
    )


def total(pids: list[int]) -> ProcSample:
    """The sum over several processes (peak: the sum of each one's own peak, an upper bound)."""
    samples = [sample(pid) for pid in pids]
    return ProcSample(
        cpu_s=sum(s.cpu_s for s in samples),
        rss_mb=sum(s.rss_mb for s in samples),
        peak_rss_mb=sum(s.peak_rss_mb for s in samples),
    )
