"""`plada-agent rollback --config FILE [--task NAME]`: make a task's previous stored head its
installed one again; other tasks are untouched.

The rolled-back head is removed (and not reinstalled by the daemon unless a newer version comes).
Without --task the one installed task is rolled back; with several installed, --task is needed.
Exit 69 if there is nothing to roll back to (or --task is needed, or names no installed task).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from agent.commands._common import EXIT_OK, add_command, print_json, report_error

if TYPE_CHECKING:
    from agent.config import AgentConfig


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "rollback",
        help="revert a task to its previous stored head",
        description=__doc__,
        handler=handler,
    )
    parser.add_argument("--task", metavar="NAME", help="task to roll back (needed when several)")


def handler(args: argparse.Namespace, config: AgentConfig) -> int:
    from agent.errors import AgentError
    from agent.models import open_store

    store = open_store(config)
    try:
        before = {r.installed for r in store.records().values() if r.installed}
        model = store.rollback(args.task)
        after = {r.installed for r in store.records().values() if r.installed}
    except AgentError as exc:
        return report_error(exc)
    undone = ", ".join(sorted(before - after))
    if args.json:
        print_json(
            {
                "rolled_back": undone,
                "current": model.name,
                "task": model.task,
                "version": model.version,
            }
        )
    else:
        print(f"rolled back {undone}; task {model.task} is now {model.name} (v{model.version})")
    return EXIT_OK
