"""A rollout record as Markdown: the decision, one row per device, and what Home Assistant shows.

Used by `plada-build rollout` (printed after the run, or for a saved record with ``--show``) and
by the trial report; it only formats what the record holds.
"""

from __future__ import annotations

import time

from builder.fleet.rollout_record import DeviceOutcome, RolloutRecord


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _after(value: float | None, start: float | None) -> str:
    return "-" if value is None or start is None else f"{value - start:.1f} s"


def _version(value: int | None) -> str:
    return "none" if value is None else f"v{value}"


def _row(d: DeviceOutcome, record: RolloutRecord) -> str:
    cells = [
        d.device_id,
        d.group,
        d.role,
        d.device_class or "-",
        _pct(d.reported_accuracy),
        _pct(d.required_accuracy),
        d.verdict or "not sent",
        _version(d.installed_version),
        _after(d.answered_at, d.published_at),
        _after(d.rolled_back_at, record.decided_at),
    ]
    return "| " + " | ".join(cells) + " |"


def _ha_row(d: DeviceOutcome) -> str:
    ha = d.home_assistant
    if ha is None or not ha.present:
        return f"| {d.device_id} | no entity | - | - | - | - |"
    state = {"on": "update available", "off": "up to date", None: "unknown"}[ha.state]
    online = {True: "online", False: "offline", None: "unknown"}[ha.available]
    return (
        f"| {d.device_id} | {state} | {ha.installed_version or '-'} | "
        f"{ha.latest_version or '-'} | {ha.release_summary or '-'} | {online} |"
    )


def to_markdown(record: RolloutRecord) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(record.started_at))
    t = record.threshold
    parts = [f"min accuracy {_pct(t.min_accuracy)}"] if t.min_accuracy is not None else []
    if t.min_fraction is not None:
        parts.append(f"{100 * t.min_fraction:.0f} % of the simulated accuracy")
    lines = [
        f"### Rollout of {record.task} v{record.version}: {record.outcome}",
        "",
        f"{record.reason}. Started {started}; canary {', '.join(record.canary_groups)}, rest "
        f"{', '.join(record.rest_groups) or 'none'}; threshold {' and '.join(parts)}; timeout "
        f"{record.timeout_s:g} s (silent devices: {record.on_timeout}); decided after "
        f"{record.decided_at - record.started_at:.1f} s, done after "
        f"{record.finished_at - record.started_at:.1f} s.",
        "",
        "| device | group | role | class | reported | required | verdict | serving | "
        "answered after | rolled back after |",
        "| --- | --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: |",
        *(_row(d, record) for d in record.devices),
        "",
        "#### What Home Assistant shows",
        "",
        "| device | HA state | installed | latest | release summary | availability |",
        "| --- | --- | --- | --- | --- | --- |",
        *(_ha_row(d) for d in record.devices),
    ]
    return "\n".join(lines) + "\n"
