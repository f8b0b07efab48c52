"""`plada-agent trial-report`: the field-trial log: bytes received and time to model per task.

    plada-agent trial-report --config /etc/plada/agent.toml [--json] [--csv FILE]

Reads the SQLite log the daemon keeps under its state folder (every received message with its
topic, payload bytes and an MQTT overhead estimate; every payload's outcome). --csv exports every
message as a row. Exit codes: 0 ok; 66 no log yet; 78 bad config.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from agent.commands._common import DEFAULT_CONFIG, EXIT_NOINPUT


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "trial-report",
        help="field-trial log summary: bytes and time to model per task; CSV export",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--config", type=Path, help=f"agent TOML (default {DEFAULT_CONFIG}); gives the state folder"
    )
    where.add_argument("--state-dir", type=Path, help="the agent's state folder, directly")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write every message to FILE")
    parser.set_defaults(func=handler)


def _fmt_bytes(n: int) -> str:
    return f"{n} B" if n < 10_240 else f"{n / 1024:.1f} KiB"


def handler(args: argparse.Namespace) -> int:
    from agent.triallog import DB_NAME, TrialLog

    state_dir = args.state_dir
    if state_dir is None:
        from agent.config import load_config
        from agent.errors import ConfigError

        try:
            state_dir = load_config(args.config or DEFAULT_CONFIG).state.dir
        except ConfigError as exc:
            print(f"config error: {exc}")
            return os.EX_CONFIG
    if not (state_dir / DB_NAME).is_file():
        print(f"no trial log at {state_dir / DB_NAME} (has the agent run yet?)")
        return EXIT_NOINPUT
    log = TrialLog(state_dir)
    report = log.report()
    if args.csv is not None:
        rows = log.export_csv(args.csv)
        report["csv"] = {"path": str(args.csv), "rows": rows}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"trial log {report['db']}")
    print(
        f"messages: {report['messages']}, payload {_fmt_bytes(report['payload_bytes'])}, "
        f"MQTT overhead ~{_fmt_bytes(report['overhead_bytes'])}"
    )
    header = ("task", "version", "outcome", "msgs", "payload", "overhead", "to model", "train")
    rows_out: list[tuple[str, ...]] = [header]
    for t in report["tasks"]:
        rows_out.append(
            (
                str(t["task"] or "?"),
                str(t["version"] if t["version"] is not None else "?"),
                t["outcome"] + (f" ({t['error'][:50]})" if t["error"] else ""),
                str(t["messages"]),
                _fmt_bytes(t["payload_bytes"]),
                _fmt_bytes(t["overhead_bytes"]),
                "-" if t["time_to_ready_s"] is None else f"{t['time_to_ready_s']:.2f} s",
                "-" if t["train_seconds"] is None else f"{t['train_seconds']:.2f} s",
            )
        )
    widths = [max(len(r[i]) for r in rows_out) for i in range(len(header))]
    for i, row in enumerate(rows_out):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if "csv" in report:
        print(f"wrote {report['csv']['rows']} rows to {report['csv']['path']}")
    return 0
