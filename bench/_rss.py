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

from plada.process_memory import own_peak_mb


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
    peak_mb = own_peak_mb()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out = {"applied": json.loads(captured.getvalue()), "peak_rss_mb": peak_mb}
    print(json.dumps({**out, "cpu_s": round(usage.ru_utime + usage.ru_stime, 3)}))
    return code


if __name__ == "__main__":
    sys.exit(main())
