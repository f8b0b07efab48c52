"""A watcher that tears a trial down when the process that owns it dies, however it dies.

The owner starts ``python -m tools.trial.guardian <trial id>`` with a pipe on its stdin and never
writes to it. The read returns end-of-file when the owner exits, including by SIGKILL, because the
kernel closes the owner's end of the pipe. If the trial's record is still there then, the owner did
not tear down, so the guardian does. It runs in its own session, so a Ctrl-C sent to the owner's
terminal does not stop it before the owner has cleaned up.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from tools.trial import registry
from tools.trial.errors import TrialError
from tools.trial.teardown import teardown_record

logger = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]


def start_guardian(trial_id: str, *, log_path: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the guardian of ``trial_id``; keep the returned process (its stdin is the lifeline)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log = log_path.open("ab") if log_path is not None else subprocess.DEVNULL
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "tools.trial.guardian", trial_id],
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            env=env,
            cwd=REPO,
            start_new_session=True,
        )
    finally:
        if log_path is not None and not isinstance(log, int):
            log.close()


def release_guardian(guardian: subprocess.Popen[bytes], *, timeout_s: float = 30.0) -> None:
    """After a clean teardown: close the lifeline and wait for the guardian to see nothing left."""
    if guardian.stdin is not None:
        guardian.stdin.close()
    try:
        guardian.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        guardian.kill()
        guardian.wait()


def watch(trial_id: str) -> int:
    sys.stdin.buffer.read()  # blocks until the owner's end of the pipe is closed
    path = registry.record_path(trial_id)
    if not path.exists():
        return 0  # the owner tore down itself
    try:
        record = registry.load(path)
        logger.warning("owner %d of trial %s is gone; tearing down", record.owner_pid, trial_id)
        teardown_record(record)
    except TrialError as exc:
        logger.error("trial %s: teardown failed: %s", trial_id, exc)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trial_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s guardian %(message)s")
    return watch(args.trial_id)


if __name__ == "__main__":
    sys.exit(main())
