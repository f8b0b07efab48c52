"""`plada-build report`: show a task build's report, or re-render its Markdown and plots.

plada-build report build/fashion-report            # summary table
plada-build report build/fashion-report --render   # rewrite report.md and the PNG plots
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.report.model import BuildReport


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "report",
        help="show a task report (report.json) or re-render its Markdown and plots",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("report", type=Path, help="report folder (or its report.json)")
    parser.add_argument("--render", action="store_true", help="rewrite report.md and the plots")
    parser.add_argument("--json", action="store_true", help="print report.json's key numbers")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from builder.errors import BuilderError
    from builder.report.model import KEY_NUMBERS
    from builder.report.write import load_report, write_report

    try:
        report = load_report(args.report)
        folder = args.report if args.report.is_dir() else args.report.parent
        if args.render:
            write_report(report, folder)
    except BuilderError as exc:
        print(f"plada-build report: {exc}", file=sys.stderr)
        return 1
    if args.json:
        data = report.model_dump(mode="json")
        print(json.dumps({k: data.get(k) for k in ("task", "budget", *KEY_NUMBERS)}, indent=2))
        return 0
    print(_summary(report))
    return 0


def _summary(report: BuildReport) -> str:
    from builder.commands.tables import render_table
    from builder.commands.task import fleet_line
    from builder.report.markdown import params_text

    rows = [
        [
            cand.strategy + (" *" if cand.chosen else ""),
            params_text(cand.params),
            str(cand.keep),
            str(cand.payload_bytes),
            f"{100 * cand.val_accuracy:.1f}%",
            f"{100 * cand.test_accuracy:.1f}%",
        ]
        for cand in report.candidates
    ]
    return "\n".join(
        [
            f"task {report.task} (budget {report.budget})",
            f"  chosen {report.strategy} {report.params}: {report.num_indices} indices, "
            f"{report.payload_bytes} bytes",
            f"  teacher {100 * report.teacher_accuracy:.1f} %  device "
            f"{100 * report.device_accuracy:.1f} %  device-oracle "
            f"{100 * report.device_oracle_accuracy:.1f} %  leakage flags {report.leakage_flags}",
            *([fleet_line(report)] if report.fleet else []),
            "",
            render_table(["strategy (* chosen)", "params", "keep", "bytes", "val", "test"], rows),
        ]
    )
