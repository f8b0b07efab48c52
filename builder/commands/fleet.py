"""`plada-build fleet`: what the fleet reports back over MQTT.

    plada-build fleet status --broker mqtt://localhost:1883 [--json]
    plada-build fleet results fashion --broker mqtt://localhost:1883 [--json]

`status`: one row per device and task: availability (last will), the task's state (ready,
training, pending, error, retired), installed version, progress and last error (--json: one
object per device, with its `tasks`). `results TASK`: per device, accuracy on its probe set (if
it has one), time from the payload's first byte to a ready model, and bytes received.
Exit codes: 0 ok; 1 broker error; 2 usage.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from builder.commands.publish import add_broker_arguments, broker_options, on_broker

if TYPE_CHECKING:
    from builder.fleet.status import DeviceView, TaskResultMessage


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "fleet",
        help="fleet status and per-task results read back from the broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fleet_sub = parser.add_subparsers(dest="fleet_command", required=True, metavar="WHAT")
    status = fleet_sub.add_parser("status", help="devices, task versions, state, last error")
    add_broker_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=status_handler)
    results = fleet_sub.add_parser(
        "results", help="per device: probe accuracy, time to model, bytes received"
    )
    results.add_argument("task", metavar="TASK", help="task name")
    add_broker_arguments(results)
    results.add_argument("--json", action="store_true", help="print JSON")
    results.set_defaults(func=results_handler)


def status_handler(args: argparse.Namespace) -> int:
    from builder.fleet.status import fleet_status

    devices = on_broker(lambda: fleet_status(broker_options(args), base_topic=args.base_topic))
    if isinstance(devices, int):
        return devices
    if args.json:
        print(json.dumps([d.to_dict() for d in devices], indent=2))
    elif not devices:
        print("no device has reported yet")
    else:
        print(status_table(devices))
    return 0


def results_handler(args: argparse.Namespace) -> int:
    from builder.fleet.status import fleet_results

    rows = on_broker(
        lambda: fleet_results(broker_options(args), args.task, base_topic=args.base_topic)
    )
    if isinstance(rows, int):
        return rows
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=2))
    elif not rows:
        print(f"no device has reported a result for {args.task} yet")
    else:
        print(results_table(rows))
    return 0


def status_table(devices: Sequence[DeviceView]) -> str:
    """One row per device and task."""
    from builder.commands.tables import render_table

    rows = []
    for d in devices:
        # An agent from before several tasks reports its queue apart; newer ones per task.
        one_task = not (d.status and d.status.tasks)
        waiting = len(d.status.pending) if d.status and one_task else 0
        for row in d.task_rows():
            err = row["last_error"]
            progress = "" if row["progress"] is None else f"{row['progress']:.0f}%"
            state = str(row["state"] or "?")
            if waiting:
                state += f" ({waiting} waiting)"
            fault = f"{err['fault']} fault " if err and err.get("fault") else ""
            rows.append(
                [
                    d.device_id,
                    str(row["device_class"] or "?"),
                    str(row["availability"] or "?"),
                    str(row["task"] or "-"),
                    state,
                    "-" if row["version"] is None else f"v{row['version']}",
                    progress,
                    f"{fault}{err['code']}: {err['message'][:60]}" if err else "",
                ]
            )
    header = ["device", "class", "avail", "task", "state", "version", "progress", "last error"]
    return render_table(header, rows)


def results_table(results: Sequence[TaskResultMessage]) -> str:
    from builder.commands.tables import render_table

    rows = [
        [
            r.device_id,
            str(r.device_class),
            str(r.version),
            "-"
            if r.probe_accuracy is None
            else f"{100 * r.probe_accuracy:.1f}% (n={r.probe_size})",
            "-" if r.time_to_model_s is None else f"{r.time_to_model_s:.2f} s",
            str(r.bytes_received),
            str(r.messages),
        ]
        for r in results
    ]
    header = ["device", "class", "version", "probe acc", "time to model", "bytes rx", "msgs"]
    return render_table(header, rows)
