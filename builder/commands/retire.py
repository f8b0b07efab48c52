"""`plada-build retire`: retire a task from a fleet group with a signed tombstone.

    plada-build retire bins --version 2 --signing-key keys/private.pem --group kitchen \\
        --trusted-key keys/public.pem --broker mqtts://broker.lan:8883 --ca ca.pem
    plada-build retire --tombstone bins-retired.plada --group kitchen --broker ...

The tombstone (task name and the version it retires, signed like a payload) is published
retained on the task's ``retired`` topic and the task's retained payload is cleared: devices
remove the task's head, keep its record, never install the retired versions again and report
it; devices joining later never receive the task. A newer version teaches the task anew.
--out also writes the tombstone to a file (to publish later with --tombstone, or keep).

Exit codes: 0 retired and acknowledged; 1 broker error; 2 usage; 65 refused (not a tombstone,
unsigned, or not verifying under --trusted-key); 66 key or tombstone file unreadable.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from builder.commands.publish import (
    EXIT_NOINPUT,
    EXIT_OK,
    add_broker_arguments,
    add_trusted_key_argument,
    broker_options,
    on_broker,
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "retire",
        help="retire a task from a fleet group (signed tombstone, retained)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", nargs="?", metavar="TASK", help="task name to retire")
    parser.add_argument(
        "--version", type=int, metavar="V", help="retire versions up to V (with TASK)"
    )
    parser.add_argument(
        "--signing-key", type=Path, metavar="PRIVATE", help="Ed25519 private key (PEM) to sign"
    )
    parser.add_argument("--note", default="", help="free text carried in the tombstone")
    parser.add_argument("--out", type=Path, help="also write the signed tombstone to this file")
    parser.add_argument(
        "--tombstone", type=Path, metavar="FILE", help="publish this signed tombstone instead"
    )
    parser.add_argument("--group", required=True, help="fleet group, [a-z0-9_-]")
    add_trusted_key_argument(parser, what="the tombstone must verify under")
    add_broker_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=handler)


def _tombstone(args: argparse.Namespace) -> bytes | int:
    """The tombstone bytes (read or made and signed), or an exit code after saying why."""
    from plada.errors import KeyFileError, PayloadError
    from plada.signing import load_private_key
    from plada.tombstone import MAX_TOMBSTONE_BYTES, encode_tombstone, make_tombstone

    if args.tombstone is not None:
        if args.task or args.version or args.signing_key:
            print("error: --tombstone excludes TASK, --version and --signing-key", file=sys.stderr)
            return 2
        try:
            with open(args.tombstone, "rb") as handle:
                return handle.read(MAX_TOMBSTONE_BYTES + 1)
        except OSError as exc:
            print(f"error: {args.tombstone}: {exc.strerror}", file=sys.stderr)
            return EXIT_NOINPUT
    if not args.task or args.version is None or args.signing_key is None:
        print(
            "error: give TASK --version V --signing-key PRIVATE, or --tombstone FILE",
            file=sys.stderr,
        )
        return 2
    try:
        key = load_private_key(args.signing_key)
    except (OSError, KeyFileError) as exc:
        print(f"error: {args.signing_key}: {exc}", file=sys.stderr)
        return EXIT_NOINPUT
    try:
        return encode_tombstone(
            make_tombstone(args.task, args.version, note=args.note), signing_key=key
        )
    except PayloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def handler(args: argparse.Namespace) -> int:
    from builder.fleet.publish import retire_task
    from plada.atomic import write_bytes_atomic
    from plada.errors import KeyFileError
    from plada.signing import load_trusted_keys

    data = _tombstone(args)
    if isinstance(data, int):
        return data
    try:
        keys = load_trusted_keys(args.trusted_key)
    except (OSError, KeyFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOINPUT
    options = on_broker(lambda: broker_options(args))
    if isinstance(options, int):
        return options
    report = on_broker(
        lambda: retire_task(
            data,
            options=options,
            group=args.group,
            base_topic=args.base_topic,
            trusted_keys=keys or None,
        )
    )
    if isinstance(report, int):
        return report
    if args.out is not None:
        write_bytes_atomic(args.out, data)
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(
            f"retired task {report.task} up to v{report.version} in group {report.group} on "
            f"{options.url}: tombstone retained on {report.topic}; cleared "
            f"{len(report.cleared)} retained topic(s)"
        )
    return EXIT_OK
