"""A trial report on disk: ``<name>.json`` (the validated record), ``<name>.sqlite`` (one row per
device and stage, the targets, every scraped sample: for ad-hoc SQL) and ``<name>.md`` (tables).

The markdown's first sections are also what the README shows (``summary_markdown``).
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import time
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path

from plada.atomic import atomic_path, write_text_atomic
from tools.trial.report_model import DeviceRow, StageReport, TrialReport
from tools.trial.rollout_tables import rollout_table

KINDS = ("plada", "images", "weights")


def write_json(report: TrialReport, path: Path) -> None:
    write_text_atomic(path, report.model_dump_json(indent=1) + "\n")


_SCHEMA = """
CREATE TABLE trial (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE devices (name TEXT PRIMARY KEY, device_class TEXT, encoder TEXT, profile TEXT);
CREATE TABLE targets (name TEXT PRIMARY KEY, value REAL, lim REAL, met INTEGER, detail TEXT);
CREATE TABLE samples (device TEXT, at REAL, name TEXT, labels TEXT, value REAL);
"""


def _row_columns() -> list[str]:
    """Every DeviceRow field but the scraped figures (those are in ``samples``)."""
    return [name for name in DeviceRow.model_fields if name != "scraped"]


def _rows_table() -> str:
    """The rows table from DeviceRow's fields, so a new field cannot be forgotten here."""
    columns = ", ".join(f"{name}" for name in _row_columns())
    return (
        f"CREATE TABLE rows (stage TEXT NOT NULL, kind TEXT NOT NULL, {columns}, "
        "wire_to_payload REAL, PRIMARY KEY (kind, device));"
    )


def write_sqlite(report: TrialReport, path: Path) -> None:
    with atomic_path(path) as tmp, closing(sqlite3.connect(tmp)) as db:
        db.executescript(_SCHEMA + _rows_table())
        meta = {
            "started_at": report.started_at,
            "prepare_seconds": report.prepare_seconds,
            "timed_seconds": report.timed_seconds,
            "task": json.dumps(report.task),
            "machine": json.dumps(report.machine),
        }
        db.executemany("INSERT INTO trial VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
        db.executemany(
            "INSERT INTO devices VALUES (?, ?, ?, ?)",
            [(d.name, d.device_class, d.encoder, d.profile) for d in report.devices],
        )
        columns = _row_columns()
        marks = ", ".join("?" * (len(columns) + 3))
        db.executemany(
            f"INSERT INTO rows (stage, kind, {', '.join(columns)}, wire_to_payload) "  # noqa: S608 - fixed names
            f"VALUES ({marks})",
            [
                (s.name, s.kind, *(getattr(r, c) for c in columns), r.wire_to_payload)
                for s in report.stages
                for r in s.rows
            ],
        )
        db.executemany(
            "INSERT INTO targets VALUES (?, ?, ?, ?, ?)",
            [(t.name, t.value, t.limit, t.met, t.detail) for t in report.targets],
        )
        db.executemany(
            "INSERT INTO samples VALUES (?, ?, ?, ?, ?)",
            [
                (s.device, s.at, x["name"], json.dumps(x["labels"], sort_keys=True), x["value"])
                for s in report.scrapes
                for x in s.samples
            ],
        )
        db.commit()


def _kb(n: float) -> str:
    return f"{n:.0f} B" if n < 10_000 else f"{n / 1000:.1f} kB"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _median(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def _ready(rows: list[DeviceRow]) -> str:
    """Median time to ready, or how many did not finish."""
    done = [r.time_to_ready_s for r in rows if r.delivered]
    text = _s(_median(done))
    missing = len(rows) - len(done)
    return text if not missing else f"{text} ({missing}/{len(rows)} not in time)"


def _received(rows: list[DeviceRow]) -> str:
    """Median time from the publish to the last byte on the device, or how many never got it."""
    done = [r.received_s for r in rows if r.delivered]
    text = _s(_median(done))
    missing = len(rows) - len(done)
    return text if not missing else f"{text} ({missing}/{len(rows)} not in time)"


def savings_table(report: TrialReport) -> str:
    """Per profile: median bytes on the wire (downlink) and time to ready, per way of delivery."""
    stages = {s.kind: s for s in report.stages if s.kind in KINDS}
    present = [k for k in KINDS if k in stages]
    head = "| profile | devices | " + " | ".join(
        f"{k} wire down | {k} received s" + (" | plada ready s" if k == "plada" else "")
        for k in present
    )
    ratios = [k for k in present if k != "plada"]
    head += "".join(f" | {k} / plada bytes" for k in ratios) + " |"
    columns = 2 + 2 * len(present) + ("plada" in present) + len(ratios)
    lines = [head, "|" + " --- |" * columns]
    for profile in dict.fromkeys(d.profile for d in report.devices):
        per = {k: [r for r in stages[k].rows if r.profile == profile] for k in present}
        wire = {k: _median(r.wire_down_bytes for r in per[k]) or 0.0 for k in present}
        cells = [profile, str(len(per[present[0]]))]
        for k in present:
            cells += [_kb(wire[k]), _received(per[k])]
            if k == "plada":
                cells.append(_ready(per[k]))
        for k in ratios:
            base = wire.get("plada") or 0.0
            cells.append(f"{wire[k] / base:.0f}x" if base else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets_table(report: TrialReport) -> str:
    lines = ["| target | value | limit | met | detail |", "| --- | --- | --- | --- | --- |"]
    for t in report.targets:
        value = "-" if t.value is None else f"{t.value:g}"
        limit = "-" if t.limit is None else f"{t.limit:g}"
        met = "yes" if t.met else "**no**"
        lines.append(f"| {t.name} | {value} | {limit} | {met} | {t.detail} |")
    return "\n".join(lines)


def plada_table(stage: StageReport) -> str:
    lines = [
        "| device | class | profile | payload + framing | agent counted (scraped) | wire down "
        "B / frames (x) | wire up | lost down / up | retrans | connects | ready s (agent s) | "
        "accuracy |",
        "|" + " --- |" * 12,
    ]
    for r in stage.rows:
        scraped = r.scraped.get("received_bytes")
        counted = f"{r.device_counted_bytes} ({scraped:.0f})" if scraped is not None else "-"
        lines.append(
            f"| {r.device} | {r.device_class} | {r.profile} | {r.payload_bytes} + "
            f"{r.framing_bytes} | {counted} | {r.wire_down_bytes} / {r.wire_down_packets} "
            f"({r.wire_to_payload:.2f}x) | {r.wire_up_bytes} | {r.lost_down_packets} / "
            f"{r.lost_up_packets} | "
            f"{r.tcp_retrans_segs} | {r.connects} | {_s(r.time_to_ready_s)} "
            f"({_s(r.device_time_to_model_s)}) | "
            f"{'-' if r.accuracy is None else f'{r.accuracy:.3f}'} |"
        )
    return "\n".join(lines)


def drop_table(stage: StageReport) -> str:
    lines = [
        "| device | profile | what happened | task messages received / needed | payload bytes "
        "received | wire down (x) | retrans | connects | link downs | ready s |",
        "|" + " --- |" * 10,
    ]
    for r in stage.rows:
        lines.append(
            f"| {r.device} | {r.profile} | {r.event or '-'} | {r.messages_received} / "
            f"{r.messages_needed} | {r.device_counted_bytes} of {r.payload_bytes} | "
            f"{r.wire_down_bytes} ({r.wire_to_payload:.2f}x) | {r.tcp_retrans_segs} | "
            f"{r.connects} | {r.link_downs} | {_s(r.time_to_ready_s)} |"
        )
    return "\n".join(lines)


def delivery_table(stage: StageReport) -> str:
    lines = [
        "| device | class | profile | payload + framing | received | wire down (x) | wire up | "
        "lost down / up | retrans | ready s (floor at rate) | accuracy |",
        "|" + " --- |" * 11,
    ]
    for r in stage.rows:
        ready = _s(r.time_to_ready_s) if r.delivered else f"not in {stage.timeout_s:g} s"
        lines.append(
            f"| {r.device} | {r.device_class} | {r.profile} | {r.payload_bytes} + "
            f"{r.framing_bytes} | {r.device_counted_bytes} | {r.wire_down_bytes} "
            f"({r.wire_to_payload:.2f}x) | {r.wire_up_bytes} | {r.lost_down_packets} / "
            f"{r.lost_up_packets} | {r.tcp_retrans_segs} | {ready} ({_s(r.min_time_s)}) | "
            f"{'-' if r.accuracy is None else f'{r.accuracy:.3f}'} |"
        )
    return "\n".join(lines)


def accuracy_table(report: TrialReport) -> str:
    stage = report.stage("plada")
    if stage is None:
        return ""
    lines = [
        "| device class | encoder | devices | accuracy (min - max) |",
        "| --- | --- | --- | --- |",
    ]
    encoders = {d.device_class: d.encoder for d in report.devices}
    for device_class, encoder in encoders.items():
        values = [r.accuracy for r in stage.rows if r.device_class == device_class]
        found = [v for v in values if v is not None]
        span = f"{min(found):.3f} - {max(found):.3f}" if found else "-"
        lines.append(f"| {device_class} | {encoder} | {len(values)} | {span} |")
    return "\n".join(lines)


def summary_markdown(report: TrialReport, *, plots: dict[str, str]) -> str:
    """Targets, what PLADA saved per profile, accuracy per class, plot links."""
    task = report.task
    parts = [
        f"Task `{task['name']}` v{task['version']}: {task['payload_bytes']} bytes "
        f"({task['num_indices']} corpus indices), {len(report.devices)} devices over "
        f"{len(report.profiles)} link profiles; timed part {report.timed_seconds:.0f} s "
        f"(preparation {report.prepare_seconds:.0f} s), load average "
        f"{' '.join(report.machine['loadavg_before'])} before, "
        f"{' '.join(report.machine['loadavg_after'])} after.",
        targets_table(report),
        "Median per profile: downlink bytes on the wire (kernel counters); seconds from the "
        "publish to the last byte on the device (received), and for PLADA also to its trained "
        "head and measured accuracy (ready: on-device training and embedding of the test images, "
        "ten agents sharing two cores; images would still need that too, weights would not):",
        savings_table(report),
        "Accuracy of each device's own head on the task's test images:",
        accuracy_table(report),
        " ".join(f"![{title}]({name})" for title, name in plots.items()),
    ]
    return "\n\n".join(p for p in parts if p)


def write_markdown(report: TrialReport, path: Path, *, plots: dict[str, str]) -> None:
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(report.started_at))
    parts = [f"# Field trial over emulated links ({when})", summary_markdown(report, plots=plots)]
    for stage in report.stages:
        tables = {
            "plada": plada_table,
            "drop": drop_table,
            "promote": rollout_table,
            "abort": rollout_table,
        }
        table = tables.get(stage.kind, delivery_table)(stage)
        parts += [
            f"## {stage.name}",
            f"{stage.description}. {stage.seconds:.0f} s; the broker's TCP resends in the stage: "
            f"{stage.broker_tcp_retrans_segs}.",
            table,
            *stage.notes,
        ]
    parts += ["## Devices and profiles", _profiles_table(report), "## Notes", *report.notes]
    write_text_atomic(path, "\n\n".join(parts) + "\n")


def _profiles_table(report: TrialReport) -> str:
    lines = ["| profile | devices | description |", "| --- | --- | --- |"]
    for name, profile in report.profiles.items():
        names = ", ".join(
            f"{d.name} ({d.device_class})" for d in report.devices if d.profile == name
        )
        lines.append(f"| {name} | {names} | {profile['description']} |")
    return "\n".join(lines)
