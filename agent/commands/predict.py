"""`plada-agent predict IMAGE... --config FILE [--task NAME]`: classify images with every installed
task's head (one encoder pass per image serves them all), or with one task's.

Text: per image, one line per task with its top classes and probabilities. --json: a list of
{"image": PATH, "tasks": {TASK: {"version": V, "top": [{"class": NAME, "prob": P}, ...]}}}; when
one head runs, each item also has "top" (that head's list), as before several tasks existed.
Exit 69 when no task (or not --task NAME) is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands._common import EXIT_NOINPUT, EXIT_OK, add_command, print_json, report_error

if TYPE_CHECKING:
    from agent.config import AgentConfig


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "predict",
        help="classify images with the encoder + every installed head (or --task NAME)",
        description=__doc__,
        handler=handler,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="classes shown (default 3)")
    parser.add_argument(
        "--task", metavar="NAME", help="run only this task's head (default: every installed task)"
    )


def handler(args: argparse.Namespace, config: AgentConfig) -> int:
    from plada.errors import ImageError
    from plada.images import decode_image

    images = []
    for path in args.images:
        try:
            images.append(decode_image(path))  # bounded before decoding (plada.limits)
        except ImageError as exc:
            print(f"error: cannot read image {exc}", file=sys.stderr)
            return EXIT_NOINPUT
    from agent.errors import AgentError
    from agent.predict import Predictor
    from plada.errors import PladaError

    try:
        predictor = Predictor.from_config(config, task=args.task)
        results = predictor.predict_tasks(images, top_k=args.top)
    except (AgentError, PladaError) as exc:
        return report_error(exc)
    versions = {t: h.model.version for t, h in predictor.heads.items()}
    if args.json:
        rows = []
        for i, path in enumerate(args.images):
            tasks = {
                task: {
                    "version": versions[task],
                    "top": [{"class": c, "prob": round(p, 6)} for c, p in results[task][i]],
                }
                for task in predictor.tasks
            }
            row: dict[str, Any] = {"image": str(path), "tasks": tasks}
            if len(tasks) == 1:
                row["top"] = next(iter(tasks.values()))["top"]
            rows.append(row)
        print_json(rows)
        return EXIT_OK
    heads = ", ".join(
        f"{h.model.task} v{h.model.version} ({h.model.name})" for h in predictor.heads.values()
    )
    print(f"model{'s' if len(versions) > 1 else ''} {heads}", file=sys.stderr)
    for i, path in enumerate(args.images):
        for task in predictor.tasks:
            shown = ", ".join(f"{c} {p:.3f}" for c, p in results[task][i])
            label = f"{path}: " if len(versions) == 1 else f"{path} [{task}]: "
            print(f"{label}{shown}")
    return EXIT_OK
