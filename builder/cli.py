"""`plada-build`: the workstation side: embed a corpus, build a signed task payload, publish it."""

from __future__ import annotations

import argparse
import sys

from builder.commands import embed, export_encoder, fleet, publish, report, task

# Command modules import heavy dependencies (torch, onnxruntime, paho) inside their handlers,
# so `plada-build --help` stays fast.
_COMMANDS = (
    embed,
    export_encoder,
    task,
    report,
    publish,
    fleet,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plada-build", description=__doc__)
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
