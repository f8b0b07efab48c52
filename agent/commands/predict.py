"""`plada-agent predict IMAGE... --config FILE`: classify images with the current model.

Text: one line per image with the top classes and probabilities. --json: a list of
{"image": PATH, "top": [{"class": NAME, "prob": P}, ...]}.
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
        help="classify images with the encoder + current head",
        description=__doc__,
        handler=handler,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--top", type=int, default=3, metavar="K", help="classes shown (default 3)")


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
        predictor = Predictor.from_config(config)
        results = predictor.predict(images, top_k=args.top)
    except (AgentError, PladaError) as exc:
        return report_error(exc)
    if args.json:
        print_json(
            [
                {"image": str(path), "top": [{"class": c, "prob": round(p, 6)} for c, p in top]}
                for path, top in zip(args.images, results, strict=True)
            ]
        )
    else:
        model = predictor.model
        print(f"model {model.task} v{model.version} ({model.name})", file=sys.stderr)
        for path, top in zip(args.images, results, strict=True):
            shown = ", ".join(f"{c} {p:.3f}" for c, p in top)
            print(f"{path}: {shown}")
    return EXIT_OK
