"""`plada-agent models --config FILE [--json]`: the stored heads, oldest first; `*` marks each
task's installed head (the one that answers for it), and a retired task is listed as such."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from agent.commands._common import EXIT_OK, add_command, print_json, report_error

if TYPE_CHECKING:
    from agent.config import AgentConfig


def register(sub: Any) -> None:
    add_command(
        sub,
        "models",
        help="list stored models (the current one and those kept for rollback)",
        description=__doc__,
        handler=handler,
    )


def handler(args: argparse.Namespace, config: AgentConfig) -> int:
    from agent.errors import AgentError
    from agent.models import open_store

    store = open_store(config)
    try:
        entries = store.entries()
        records = store.records()
    except AgentError as exc:
        return report_error(exc)
    installed = {r.installed for r in records.values() if r.installed}
    retired = {
        task: r.retired.version for task, r in sorted(records.items()) if r.is_retired and r.retired
    }
    rows: list[dict[str, Any]] = [
        {
            "name": m.name,
            "current": m.name in installed,  # installed for its task
            "task": m.task,
            "version": m.version,
            "classes": list(m.meta.class_names),
            "payload_digest": m.payload_digest,
            "created_at": m.meta.created_at,
            "train_seconds": m.meta.train_seconds,
            "train_accuracy": m.meta.train_accuracy,
            "num_examples": m.meta.num_examples,
            "backend": m.meta.backend,
            "encoder_id": m.meta.encoder_id,
            "hyper_params": dict(m.meta.hyper_params),
            "path": str(m.onnx_path),
        }
        for m in entries
    ]
    rows += [
        {"name": None, "current": False, "task": task, "version": None, "retired_version": v}
        for task, v in retired.items()
    ]
    if args.json:
        print_json(rows)
        return EXIT_OK
    if not rows:
        print(f"no models stored under {store.root}")
        return EXIT_OK
    for m in entries:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m.meta.created_at))
        print(
            f"{'*' if m.name in installed else ' '} {m.name}  task {m.task} v{m.version}  "
            f"{len(m.meta.class_names)} classes  train acc {m.meta.train_accuracy:.3f}  "
            f"{m.meta.backend}  {created} UTC  payload {m.payload_digest[:12]}"
        )
    for task, version in retired.items():
        print(f"  task {task} retired (versions up to {version}); its record is kept")
    return EXIT_OK
