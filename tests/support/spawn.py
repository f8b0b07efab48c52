"""Run a Python module of this checkout as a separate process (a real daemon the test can kill)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spawn_python(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`python ARGS` from the repository root (this checkout's packages first), output to `log`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as fh:
        return subprocess.Popen([sys.executable, *args], stdout=fh, stderr=fh, env=env, cwd=ROOT)
