"""`plada`: the shared-core command line (keys, payloads, reference corpora)."""

from __future__ import annotations

import argparse
import sys

from plada.commands import corpus, keys, payload


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plada", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    keys.register(sub)
    payload.register(sub)
    corpus.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Each subcommand's `register` sets `func(args) -> exit code` on its parser."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
