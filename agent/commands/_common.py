"""Shared bits of the offline agent commands: --config, exit codes, error reporting.

Exit codes (sysexits.h, so systemd and scripts can act on them):
  0  success
  1  unexpected failure
  65 EX_DATAERR      the payload was rejected (signature, corpus, bounds, expiry, version policy)
  66 EX_NOINPUT      an input file (payload, image) is missing, unreadable, or over its size bound
  69 EX_UNAVAILABLE  nothing to act on (no model trained yet, nothing to roll back to)
  70 EX_SOFTWARE     the encoder, feature cache or trainer failed
  74 EX_IOERR        the device's own data is damaged: a corpus image or shard, a disk write
  78 EX_CONFIG       the config is missing or invalid (systemd: RestartPreventExitStatus=78)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import AgentConfig

DEFAULT_CONFIG = Path("/etc/plada/agent.toml")
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REJECTED = 65
EXIT_NOINPUT = 66
EXIT_UNAVAILABLE = 69
EXIT_SOFTWARE = 70
EXIT_IOERR = 74
EXIT_CONFIG = 78
EXIT_CODES_HELP = (
    "exit codes: 0 ok, 1 unexpected failure, 65 payload rejected, 66 input file missing, "
    "unreadable or too large, 69 nothing to act on (no model / nothing to roll back), "
    "70 encoder/cache/trainer failure, 74 the device's corpus or disk is damaged, 78 bad config"
)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"agent TOML config (default {DEFAULT_CONFIG})",
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def add_command(
    sub: Any,
    name: str,
    *,
    help: str,
    description: str | None,
    handler: Callable[[argparse.Namespace, AgentConfig], int],
    formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter,
) -> argparse.ArgumentParser:
    """Add an offline command: --config, --json, the exit codes as epilog; returns its parser.

    `handler` gets the loaded config. A bad config exits EXIT_CONFIG before any other work, so a
    broken config is never masked by, say, a missing input file. Callers add their own arguments
    to the returned parser, after --config and --json (the order `--help` shows).
    """
    parser: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help,
        description=description,
        epilog=EXIT_CODES_HELP,
        formatter_class=formatter_class,
    )
    add_config_argument(parser)
    add_json_argument(parser)

    def run(args: argparse.Namespace) -> int:
        config = load(args.config)
        if config is None:
            return EXIT_CONFIG
        return handler(args, config)

    parser.set_defaults(func=run)
    return parser


def load(path: Path) -> AgentConfig | None:
    """The config, or None after printing the problem (caller returns EXIT_CONFIG)."""
    from agent.config import load_config
    from agent.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None


def exit_code_for(exc: BaseException) -> int:
    """Map an expected error to its exit code (EXIT_FAILURE for anything else)."""
    from agent.errors import (
        ConfigError,
        EncoderBackendError,
        FeatureCacheError,
        ModelStoreError,
        TaskRejectedError,
        TrainerError,
    )
    from plada.errors import CorpusError, HeadTrainingError, ImageError, PayloadError

    codes: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int], ...] = (
        (ConfigError, EXIT_CONFIG),
        ((PayloadError, TaskRejectedError), EXIT_REJECTED),
        (ImageError, EXIT_NOINPUT),
        (ModelStoreError, EXIT_UNAVAILABLE),
        ((EncoderBackendError, FeatureCacheError, TrainerError, HeadTrainingError), EXIT_SOFTWARE),
        ((CorpusError, OSError), EXIT_IOERR),
    )
    for kinds, code in codes:
        if isinstance(exc, kinds):
            return code
    return EXIT_FAILURE


def report_error(exc: BaseException) -> int:
    """Print `error (Type): message` and, for a device fault, what to do; return the exit code."""
    from agent.faults import classify

    print(f"error ({type(exc).__name__}): {exc}", file=sys.stderr)
    fault = classify(exc)
    if not fault.is_payload:
        print(f"  {fault.hint}", file=sys.stderr)
    return exit_code_for(exc)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False, default=str))
