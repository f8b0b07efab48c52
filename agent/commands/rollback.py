"""`plada-agent rollback --config FILE`: make the previous stored model current again.

The rolled-back model is removed. Exit 69 if there is nothing to roll back to.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from agent.commands._common import EXIT_OK, add_command, print_json, report_error

if TYPE_CHECKING:
    from agent.config import AgentConfig


def register(sub: Any) -> None:
    add_command(
        sub,
        "rollback",
        help="revert to the previous stored model",
        description=__doc__,
        handler=handler,
    )


def handler(args: argparse.Namespace, config: AgentConfig) -> int:
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
