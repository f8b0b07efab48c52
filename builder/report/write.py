"""The report folder of a task build: report.json, report.md and PNG plots.

report.json is the source of truth: the Markdown and the plots are rendered from it alone (so
`plada-build report DIR` can re-render them), which is why it also carries the kept-per-class counts
and the energy histograms. It is checked against its schema (builder/report/model.py) when written
and when read. Every file is written to a temporary name, fsynced and moved into place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from builder.errors import BuilderError
from builder.report.markdown import render_markdown
from builder.report.model import BuildReport
from builder.report.plots import render_plots
from plada.atomic import write_text_atomic

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def write_report(report: BuildReport | Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write report.json, report.md and the plots into out_dir; returns the paths written."""
    record = BuildReport.parse(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record.to_json(), indent=2, allow_nan=False) + "\n"
    write_text_atomic(out_dir / REPORT_JSON, text, mode=0o644)
    write_text_atomic(out_dir / REPORT_MD, render_markdown(record), mode=0o644)
    return [out_dir / REPORT_JSON, out_dir / REPORT_MD, *render_plots(record, out_dir)]


def load_report(path: Path) -> BuildReport:
    """Read and check report.json from a report folder (or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BuilderError(f"no report at {path}") from exc
    except json.JSONDecodeError as exc:
        raise BuilderError(f"{path} is not valid JSON: {exc}") from exc
    return BuildReport.parse(data, where=str(path))
