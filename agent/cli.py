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
    parser = argparse.ArgumentParser(prog="plada-agent", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Each subcommand's `register` sets `func(args) -> exit code` on its parser."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
