"""`plada-agent rollback --config FILE`: make the previous stored model current again.

The rolled-back model is removed. Exit 69 if there is nothing to roll back to.
"""

from __future__ import annotations

import argparse
from typing import Any

from agent.commands._common import (
    EXIT_CODES_HELP,
    EXIT_CONFIG,
    EXIT_OK,
    add_config_argument,
    add_json_argument,
    load,
    print_json,
    report_error,
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "rollback",
        help="revert to the previous stored model",
        description=__doc__,
        epilog=EXIT_CODES_HELP,
    )
    add_config_argument(parser)
    add_json_argument(parser)
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    config = load(args.config)
    if config is None:
        return EXIT_CONFIG
    from agent.errors import AgentError
    from agent.models import ModelStore

    store = ModelStore(config.state.dir)
    try:
        before = store.current_name()
        model = store.rollback()
    except AgentError as exc:
        return report_error(exc)
    if args.json:
        print_json(
            {
                "rolled_back": before,
                "current": model.name,
                "task": model.task,
                "version": model.version,
            }
        )
    else:
        print(f"rolled back {before}; current is now {model.name} ({model.task} v{model.version})")
    return EXIT_OK
