"""`plada`: the shared-core command line (keys, payloads, reference corpora)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import Any, Protocol

from plada.commands import corpus, keys, payload


class Command(Protocol):
    """A command module: `register` adds its subparser and sets `func(args) -> exit code`."""

    def register(self, sub: Any) -> None: ...


def build_command_parser(
    prog: str, description: str | None, commands: Iterable[Command]
) -> argparse.ArgumentParser:
    """The top-level parser of `plada`, `plada-build` and `plada-agent`: one COMMAND each."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in commands:
        command.register(sub)
    return parser


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse `argv` and run the chosen subcommand; its `func` returns the exit code."""
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def build_parser() -> argparse.ArgumentParser:
    return build_command_parser("plada", __doc__, (keys, payload, corpus))


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
