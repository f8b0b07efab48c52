"""`plada-agent`: the device side: receive a task, train a head on-device, predict."""

from __future__ import annotations

import argparse
import sys

from agent.commands import (
    apply,
    check_config,
    models,
    predict,
    rollback,
    run,
    trial_report,
    warm_cache,
)
from plada.cli import build_command_parser, run_command

# Command modules import heavy dependencies (torch, onnxruntime, paho) inside their handlers,
# so `plada-agent --help` stays fast.
_COMMANDS = (
    run,
    check_config,
    apply,
    predict,
    models,
    rollback,
    warm_cache,
    trial_report,
)


def build_parser() -> argparse.ArgumentParser:
    return build_command_parser("plada-agent", __doc__, _COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
