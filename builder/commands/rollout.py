"""`plada-build rollout`: a staged rollout: canary group first, judged, then the rest or back.

    plada-build rollout build/fashion.plada --canary canary --rest field \\
        --signing-key keys/private.pem --trusted-key keys/public.pem --report build/report.json \\
        --min-fraction 0.9 --device-timeout 900 --record rollout.json \\
        --broker mqtts://broker.lan:8883 ...
    plada-build rollout --show rollout.json

The payload goes to the canary group(s) (with publish's checks). Each canary device's result for
it is judged: its probe_accuracy must reach the larger of --min-accuracy and --min-fraction x the
simulated accuracy of its device class in --report (report.json ``devices``). Default: 0.9 of the
simulation (needs --report); giving either flag sets exactly what you give. The decision is taken
as soon as it is certain: one failing canary aborts at once.

- Promoted (every canary device passed): the payload goes to the --rest group(s); their results
  are awaited for the record.
- Aborted: a signed revocation (made with --signing-key before anything is published) goes to the
  canary group(s): devices that installed the version roll back to the head they served before
  (or none) and refuse it from then on; the group's retained copy is cleared and what it retained
  before is restored, so a late canary device never installs it. The rest never receive it.
- A device that has not answered --device-timeout seconds after the publish is ``no_answer``: it
  fails the canary (--on-timeout abort, the default) or is left out (--on-timeout ignore; at
  least one canary device must still pass).

Devices are found by the group in their retained status; --device GROUP=ID adds one that does not
report it. The record (--record, JSON) lists per device its group, class, verdict, reported and
required accuracy, the version serving at the end, times, and what Home Assistant shows for its
task entity (rendered from the retained discovery config and state topics); a Markdown summary
is printed. Exit codes: 0 promoted; 3 aborted; 1 broker error; 2 usage; 65 payload or revocation
refused by the checks; 66 payload, key or report unreadable.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from builder.commands.publish import (
    EXIT_NOINPUT,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    _chunk_bytes,
    add_broker_arguments,
    add_trusted_key_argument,
    broker_options,
    on_broker,
)

EXIT_ABORTED = 3


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "rollout",
        help="staged rollout: canary group first, promote on its accuracy or revoke",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("payload", type=Path, nargs="?", metavar="PAYLOAD", help="payload file")
    parser.add_argument("--show", type=Path, metavar="RECORD", help="print a saved record")
    parser.add_argument(
        "--canary", action="append", default=[], metavar="GROUP", help="canary group; repeatable"
    )
    parser.add_argument(
        "--rest",
        action="append",
        default=[],
        metavar="GROUP",
        help="group(s) that get the task once the canary passed; repeatable",
    )
    parser.add_argument(
        "--signing-key", type=Path, metavar="PRIVATE", help="Ed25519 key (PEM) for the revocation"
    )
    parser.add_argument("--report", type=Path, help="report.json of the build (simulated accuracy)")
    parser.add_argument("--min-accuracy", type=float, metavar="A", help="absolute, 0..1")
    parser.add_argument(
        "--min-fraction", type=float, metavar="F", help="of the class's simulated accuracy, 0..1"
    )
    parser.add_argument(
        "--device-timeout",
        dest="rollout_timeout",
        type=float,
        default=600.0,
        metavar="S",
        help="seconds after a publish to wait for devices (default 600)",
    )
    parser.add_argument("--on-timeout", choices=("abort", "ignore"), default="abort")
    parser.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="GROUP=ID",
        help="a device of GROUP that does not report its group; repeatable",
    )
    parser.add_argument("--record", type=Path, help="write the rollout record (JSON) here")
    add_trusted_key_argument(parser, what="payload and revocation must verify under")
    parser.add_argument("--ha-prefix", default="homeassistant", help="HA discovery prefix")
    parser.add_argument("--max-chunk-bytes", type=_chunk_bytes, default=131_072)
    parser.add_argument("--force", action="store_true", help="as publish --force")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_broker_arguments(parser)
    parser.set_defaults(func=handler)
    # --broker is required by the shared flags; --show needs none.
    for action in parser._actions:
        if action.dest == "broker":
            action.required = False


def _devices(pairs: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pair in pairs:
        group, sep, device = pair.partition("=")
        if not sep or not group or not device:
            raise ValueError(f"--device {pair!r}: expected GROUP=ID")
        out.setdefault(group, []).append(device)
    return out


def _simulated(path: Path | None) -> dict[str, float]:
    """Device class -> simulated accuracy from a build report."""
    if path is None:
        return {}
    from builder.report.model import BuildReport

    report = BuildReport.parse(json.loads(path.read_text(encoding="utf-8")), where=str(path))
    sim = {name: r.accuracy for name, r in report.devices.items()}
    if report.default_device and report.default_device not in sim:
        sim[report.default_device] = report.device_accuracy
    return sim


class _Bars:
    """One tqdm bar per rollout phase, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        bar = self.bars.get(phase)
        if bar is None:
            bar = self.bars[phase] = tqdm(total=total, desc=phase, unit="device", leave=True)
        bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def handler(args: argparse.Namespace) -> int:
    from builder.errors import BuilderError, RolloutError
    from builder.fleet.rollout_record import RolloutRecord
    from builder.fleet.rollout_render import to_markdown

    if args.show is not None:
        try:
            print(to_markdown(RolloutRecord.load(args.show)), end="")
        except RolloutError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NOINPUT
        return EXIT_OK
    if args.payload is None or args.signing_key is None or not args.canary or not args.broker:
        print(
            "error: give PAYLOAD --canary GROUP --signing-key PRIVATE --broker URL (or --show)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    from builder.fleet.rollout import run_rollout
    from builder.fleet.rollout_policy import Threshold
    from plada.errors import KeyFileError, PayloadError
    from plada.payload import read_payload_file
    from plada.signing import load_private_key, load_trusted_keys

    try:
        data = read_payload_file(args.payload)
        keys = load_trusted_keys(args.trusted_key)
        key = load_private_key(args.signing_key)
        simulated = _simulated(args.report)
    except (OSError, KeyFileError, ValueError, BuilderError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NOINPUT
    except PayloadError as exc:
        print(f"error: refused: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    given = args.min_accuracy is not None or args.min_fraction is not None
    if not given and not simulated:
        print(
            "error: the default threshold is 0.9 of the simulated accuracy: give --report, "
            "or --min-accuracy",
            file=sys.stderr,
        )
        return EXIT_USAGE
    bars = _Bars(enabled=not args.no_progress)

    def run() -> RolloutRecord:
        threshold = (
            Threshold(min_accuracy=args.min_accuracy, min_fraction=args.min_fraction)
            if given
            else Threshold()
        )
        return run_rollout(
            data,
            options=broker_options(args),
            canary=args.canary,
            rest=args.rest,
            signing_key=key,
            threshold=threshold,
            timeout_s=args.rollout_timeout,
            on_timeout=args.on_timeout,
            simulated=simulated,
            devices=_devices(args.device),
            base_topic=args.base_topic,
            ha_prefix=args.ha_prefix,
            max_chunk_bytes=args.max_chunk_bytes,
            trusted_keys=keys or None,
            force=args.force,
            progress=bars,
        )

    try:
        record = on_broker(run)
    except RolloutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        bars.close()
    if isinstance(record, int):
        return record
    if args.record is not None:
        record.save(args.record)
    print(to_markdown(record), end="")
    return EXIT_OK if record.outcome == "promoted" else EXIT_ABORTED
