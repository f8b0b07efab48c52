"""A rollout stage of the trial report as Markdown: the wire per device (kernel counters) beside
its verdict, then the rollout record's own tables (builder.fleet.rollout_render: decision, per
device verdict, and what Home Assistant shows)."""

from __future__ import annotations

from builder.fleet.rollout_render import to_markdown
from tools.trial.report_model import StageReport


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def rollout_table(stage: StageReport) -> str:
    lines = [
        "| device | class | profile | payload + framing | agent counted | task messages | wire "
        "down / up | retrans | connects | accuracy | verdict, serving, Home Assistant |",
        "|" + " --- |" * 11,
    ]
    for r in stage.rows:
        lines.append(
            f"| {r.device} | {r.device_class} | {r.profile} | {r.payload_bytes} + "
            f"{r.framing_bytes} | {r.device_counted_bytes or 0} | {r.messages_received or 0} | "
            f"{r.wire_down_bytes} / {r.wire_up_bytes} | {r.tcp_retrans_segs} | {r.connects} | "
            f"{_pct(r.accuracy)} | {r.event} |"
        )
    parts = ["\n".join(lines)]
    if stage.rollout is not None:
        parts.append(to_markdown(stage.rollout).strip())
    return "\n\n".join(parts)
