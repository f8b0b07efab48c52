"""`plada-build publish`: send a signed payload once, retained, to a fleet group over MQTT.

Each task has its own retained topics under the group (``<base>/group/<group>/tasks/<task>``...),
so publishing one task leaves the group's other tasks in place; see the README's topic scheme.

    plada-build publish build/fashion.plada --broker mqtts://broker.lan:8883 --group kitchen \
        --ca ca.pem --username builder --password-file ~/.config/plada/mqtt_password

The password comes from --password-file or the PLADA_MQTT_PASSWORD environment variable (the
username from --username or PLADA_MQTT_USERNAME); never from the command line, never printed.

Before anything is sent the payload must decode, be signed (and verify under --trusted-key, the
builder's public key: recommended), not be expired, and not be older than the task retained for
the group (--force publishes an older or conflicting version anyway).
Exit codes: 0 published and acknowledged; 1 broker error; 2 usage (bad flags, a payload that
cannot be cut under --max-chunk-bytes); 65 payload refused by the checks above; 66 payload or
key file unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

EXIT_OK = 0
EXIT_BROKER = 1
EXIT_USAGE = 2
EXIT_REFUSED = 65
EXIT_NOINPUT = 66
_MIN_CHUNK_BYTES = 1024


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    """Connection flags shared by `publish` and `fleet`."""
    parser.add_argument("--broker", required=True, help="mqtt://host[:1883] or mqtts://host[:8883]")
    parser.add_argument("--ca", type=Path, help="CA bundle to verify the broker (mqtts://)")
    parser.add_argument("--cert", type=Path, help="client certificate (PEM) for mutual TLS")
    parser.add_argument("--key", dest="cert_key", type=Path, help="client certificate's key (PEM)")
    parser.add_argument("--username", help="broker username (default: $PLADA_MQTT_USERNAME)")
    parser.add_argument(
        "--password-file",
        type=Path,
        help="file whose first line is the broker password (default: $PLADA_MQTT_PASSWORD)",
    )
    parser.add_argument(
        "--base-topic", default="plada", help="topic prefix of the fleet (default: plada)"
    )
    parser.add_argument("--mqtt3", action="store_true", help="speak MQTT 3.1.1 instead of MQTT 5")
    parser.add_argument(
        "--timeout", type=float, default=15.0, help="seconds to wait for the broker (default 15)"
    )


def add_trusted_key_argument(parser: argparse.ArgumentParser, *, what: str) -> None:
    """--trusted-key, the same repeatable flag for every command that checks a signature before
    it publishes; `what` names what must verify under it."""
    parser.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        default=[],
        metavar="PUB",
        help=f"public key (PEM) {what}; repeatable",
    )


def broker_options(args: argparse.Namespace) -> Any:
    from builder.fleet.session import USERNAME_ENV, BrokerOptions, read_password

    if (args.cert is None) != (args.cert_key is None):
        raise ValueError("--cert and --key go together")
    return BrokerOptions(
        url=args.broker,
        username=args.username or os.environ.get(USERNAME_ENV) or None,
        password=read_password(password_file=args.password_file),
        ca_file=args.ca,
        cert_file=args.cert,
        key_file=args.cert_key,
        protocol5=not args.mqtt3,
        timeout_s=args.timeout,
    )


T = TypeVar("T")


def on_broker(call: Callable[[], T]) -> T | int:
    """call(), or the exit code after naming what went wrong: 2 usage (bad flags, a payload that
    cannot be cut into chunks), 65 refused by publish's checks, 1 the broker."""
    from builder.errors import PublishError, PublishRefusedError
    from plada.errors import ChunkError

    try:
        return call()
    except (ValueError, ChunkError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PublishRefusedError as exc:
        print(f"error: refused, nothing published: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except PublishError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BROKER


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "publish",
        help="publish a signed payload once, retained, to a fleet group",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("payload", type=Path, metavar="PAYLOAD", help="payload file (.plada)")
    parser.add_argument("--group", required=True, help="fleet group, [a-z0-9_-]")
    parser.add_argument(
        "--max-chunk-bytes",
        type=_chunk_bytes,
        default=131_072,
        help=f"split payloads larger than this (default 131072, the AWS IoT Core limit; at "
        f"least {_MIN_CHUNK_BYTES})",
    )
    add_trusted_key_argument(parser, what="the payload must verify under, e.g. the builder's")
    parser.add_argument(
        "--force",
        action="store_true",
        help="publish even an older version than the task retained for the group (or one "
        "retired there)",
    )
    add_broker_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the publish report as JSON")
    parser.set_defaults(func=handler)


def _chunk_bytes(text: str) -> int:
    value = int(text)
    if value < _MIN_CHUNK_BYTES:
        raise argparse.ArgumentTypeError(f"{value} is below the minimum of {_MIN_CHUNK_BYTES}")
    return value


def handler(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from builder.fleet.publish import publish_payload
    from plada.errors import KeyFileError, PayloadError
    from plada.payload import payload_digest, read_payload_file
    from plada.signing import load_trusted_keys

    try:
        data = read_payload_file(args.payload)
        keys = load_trusted_keys(args.trusted_key)
    except (OSError, KeyFileError) as exc:
        print(f"error: {args.payload}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return EXIT_NOINPUT
    except PayloadError as exc:
        print(f"error: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    options = on_broker(lambda: broker_options(args))
    if isinstance(options, int):
        return options
    report = on_broker(
        lambda: publish_payload(
            data,
            options=options,
            group=args.group,
            base_topic=args.base_topic,
            max_chunk_bytes=args.max_chunk_bytes,
            check=True,
            trusted_keys=keys or None,
            force=args.force,
        )
    )
    if isinstance(report, int):
        return report
    if not keys:
        print(
            "note: the signature was not checked against a key (pass --trusted-key PUB)",
            file=sys.stderr,
        )
    out = {**asdict(report), "payload_id": payload_digest(data)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        how = f"{report.messages} chunks" if report.chunked else "one message"
        print(
            f"published {args.payload} ({report.payload_bytes} bytes, {how}) to group "
            f"{args.group} on {options.url} in {report.seconds:.2f} s; payload id "
            f"{out['payload_id'][:16]}"
        )
        if report.cleared:
            print(f"cleared {len(report.cleared)} stale retained topic(s) of task {report.task}")
    return EXIT_OK
