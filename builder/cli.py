"""`plada-build`: the workstation side: embed a corpus, build a signed task payload, publish it,
retire it, roll it out in stages."""

from __future__ import annotations

import argparse
import sys

from builder.commands import (
    embed,
    export_encoder,
    fleet,
    publish,
    report,
    retire,
    rollout,
    task,
)
from plada.cli import build_command_parser, run_command

# Command modules import heavy dependencies (torch, onnxruntime, paho) inside their handlers,
# so `plada-build --help` stays fast.
_COMMANDS = (
    embed,
    export_encoder,
    task,
    report,
    publish,
    retire,
    rollout,
    fleet,
)


def build_parser() -> argparse.ArgumentParser:
    return build_command_parser("plada-build", __doc__, _COMMANDS)


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
