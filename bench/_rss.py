"""Run a module like `python -m MODULE ARGS...` and print {"applied": its JSON stdout,
"peak_rss_mb": this process's peak RSS, "cpu_s": its CPU seconds (user + system, interpreter
start and imports included)}. Used by bench/agent.py and bench/device_budget.py to measure the
real CLI; CPU seconds are what a one-core device would wait on an idle core, which a loaded
shared machine's wall time is not."""

from __future__ import annotations

import contextlib
import io
import json
import resource
import runpy
import sys


def _vm_hwm_mb() -> float:
    """Peak resident set of this process (VmHWM). ru_maxrss is not used: on Linux it carries
    the parent's peak across fork + exec, so a child of a big process would report the parent."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] != "-m":
        print("usage: _rss.py -m MODULE [ARGS...]", file=sys.stderr)
        return 2
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    captured = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(captured):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = int(exc.code or 0)
    peak_mb = _vm_hwm_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"applied": json.loads(captured.getvalue()), "peak_rss_mb": peak_mb}
    print(json.dumps({**out, "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}))
    return code


if __name__ == "__main__":
    sys.exit(main())
