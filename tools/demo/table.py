"""The demo's closing table: each agent's own accuracy beside the builder's prediction for it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from builder.commands.tables import render_table
from tools.demo.agents import AgentPlan

_HEADER = (
    "device",
    "class",
    "encoder",
    "accuracy",
    "simulated",
    "device-oracle",
    "publish->ready",
    "first byte->model",
    "bytes rx",
)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def print_table(
    plans: list[AgentPlan],
    results: Mapping[str, Mapping[str, Any]],
    report: Mapping[str, Any],
    *,
    payload_bytes: int,
    published_at: float,
) -> str:
    """The table as text, from report.json's content and each agent's result message."""
    devices = report.get("devices", {})
    rows = []
    for plan in plans:
        r = results[plan.device_id]
        sim = devices.get(plan.encoder, {})
        ttm = r.get("time_to_model_s")
        rows.append(
            [
                plan.device_id,
                plan.device_class,
                plan.encoder,
                _pct(r.get("probe_accuracy")),
                _pct(sim.get("accuracy")),
                _pct(sim.get("oracle_accuracy")),
                f"{r['finished_at'] - published_at:.2f} s",
                "-" if ttm is None else f"{ttm:.2f} s",
                str(r["bytes_received"]),
            ]
        )
    return "\n".join(
        [
            f"task {report['task']} v{report.get('version')}: payload {payload_bytes} bytes "
            f"({report['num_indices']} (index, label) pairs, strategy {report['strategy']})",
            f"teacher ({report['teacher']['encoder']}) accuracy on the test split: "
            f"{100 * report['teacher_accuracy']:.1f} %",
            _view_line(report.get("view")),
            "",
            render_table(_HEADER, rows),
            "",
            "accuracy: the agent's own model on the target's test split (its probe set); "
            "simulated: the builder's prediction for that device class; device-oracle: that "
            "encoder with a head trained on the whole labelled train split.",
        ]
    )


def _view_line(view: Any) -> str:
    """The view the devices apply to the kept reference images (issue 16), or that there is none."""
    if not isinstance(view, dict):
        return "view: none (the reference images as they are)"
    return f"view: {view.get('description')} (every device applies it before embedding)"
