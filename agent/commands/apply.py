"""`plada-agent apply PAYLOAD_FILE --config FILE`: the whole device path, offline (no broker).

Verifies the signature, checks the corpus fingerprint, decodes, gathers features (feature cache,
computing what is missing), trains the head and stores it as the task's installed head, beside
the other tasks installed here. A rejected payload changes nothing.
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
        "apply",
        help="apply a task payload file: verify, train on-device, store the model",
        description=__doc__,
        handler=handler,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("payload", type=Path, metavar="PAYLOAD_FILE", help="signed payload file")
    parser.add_argument(
        "--force",
        action="store_true",
        help="skip the version policy: install even a version that is not newer than the task's "
        "installed one, or one rolled back on this device",
    )


def handler(args: argparse.Namespace, config: AgentConfig) -> int:
    from agent.errors import AgentError
    from agent.pipeline import apply_payload
    from plada.errors import PladaError
    from plada.payload import read_payload_file

    try:
        data = read_payload_file(args.payload)
    except OSError as exc:
        print(f"error: cannot read payload file {args.payload}: {exc.strerror}", file=sys.stderr)
        return EXIT_NOINPUT
    except PladaError as exc:
        return report_error(exc)

    def progress(fraction: float, stage: str) -> None:
        if not args.json:
            print(f"[{fraction * 100:3.0f}%] {stage}", file=sys.stderr)

    try:
        applied = apply_payload(data, config=config, progress=progress, force=args.force)
    except (AgentError, PladaError, OSError) as exc:
        return report_error(exc)
    if args.json:
        print_json(
            {
                "task": applied.task,
                "version": applied.version,
                "payload_digest": applied.payload_digest,
                "num_indices": applied.num_indices,
                "num_classes": applied.num_classes,
                "features_computed": applied.features_computed,
                "train_seconds": round(applied.train_seconds, 4),
                "total_seconds": round(applied.total_seconds, 4),
                "train_accuracy": applied.train_accuracy,
                "backend": applied.backend,
                "model": applied.model_name,
                "model_path": str(applied.model_path),
            }
        )
    else:
        print(
            f"applied {applied.task} v{applied.version}: {applied.num_indices} examples "
            f"({applied.features_computed} embedded now), {applied.num_classes} classes, "
            f"trained in {applied.train_seconds:.2f} s on {applied.backend}, "
            f"train accuracy {applied.train_accuracy:.3f}; total {applied.total_seconds:.2f} s; "
            f"model {applied.model_name}"
        )
    return EXIT_OK
