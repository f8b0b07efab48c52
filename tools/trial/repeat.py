"""``python -m tools.trial.repeat`` (``make trial-repeat``): the PLADA delivery on a lossy profile,
repeated, so the wire-bytes target is judged on a distribution and not on one draw of the loss.

    sudo .venv/bin/python -m tools.trial.repeat [--runs 5] [--fleet lora:6] [--budget 2KiB]

At 5 % loss a delivery of a few frames either loses nothing that matters or has TCP resend a whole
payload segment (lost on the way down, or its acknowledgement lost on the way up): one trial of
three devices says little about which is typical. Each run is a fresh ``python -m tools.trial``
with only the ``plada`` stage (new namespaces, broker and agents; the task and feature caches are
reused), and every delivery on ``--profile`` becomes one row. Writes ``<out>/<name>.json`` (the
rows and their summary), ``.md`` and a histogram of the ratios against the 1.5x limit.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, median

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend
from pydantic import BaseModel, ConfigDict

from plada.atomic import write_text_atomic
from tools.trial import trial_cli
from tools.trial.errors import TrialError
from tools.trial.report_model import TrialReport
from tools.trial.targets import THIN_PROFILE, WIRE_LIMIT


class Delivery(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    run: int
    device: str
    device_class: str
    delivered: bool
    ratio: float  # downlink wire bytes / (payload + MQTT framing)
    wire_down_bytes: int
    wire_down_packets: int
    lost_down_packets: int
    lost_up_packets: int
    tcp_retrans_segs: int


class RepeatReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str
    limit: float
    runs: int
    payload_bytes: int
    started_at: float
    load_average: list[float]  # 1-min load average at the start of each run
    deliveries: list[Delivery]

    @property
    def within(self) -> int:
        return sum(d.delivered and d.ratio <= self.limit for d in self.deliveries)

    def summary(self) -> dict[str, float]:
        ratios = [d.ratio for d in self.deliveries]
        return {
            "deliveries": len(ratios),
            "delivered": sum(d.delivered for d in self.deliveries),
            "within_limit": self.within,
            "median": round(median(ratios), 3),
            "mean": round(mean(ratios), 3),
            "worst": round(max(ratios), 3),
        }


def deliveries(report: TrialReport, *, run: int, profile: str) -> list[Delivery]:
    """One row per device of ``profile`` in the report's PLADA stage."""
    stage = report.stage("plada")
    if stage is None:
        raise TrialError(f"run {run}: the report has no plada stage")
    return [
        Delivery(
            run=run,
            device=r.device,
            device_class=r.device_class,
            delivered=r.delivered,
            ratio=round(r.wire_to_payload, 4),
            wire_down_bytes=r.wire_down_bytes,
            wire_down_packets=r.wire_down_packets,
            lost_down_packets=r.lost_down_packets,
            lost_up_packets=r.lost_up_packets,
            tcp_retrans_segs=r.tcp_retrans_segs,
        )
        for r in stage.rows
        if r.profile == profile
    ]


def markdown(report: RepeatReport, plot: str) -> str:
    s = report.summary()
    over = [d for d in report.deliveries if d.ratio > report.limit]
    lost = sum(d.lost_down_packets + d.lost_up_packets > 0 or d.tcp_retrans_segs > 0 for d in over)
    lines = [
        f"# PLADA delivery on `{report.profile}`, repeated ({report.runs} runs)",
        "",
        f"Task payload {report.payload_bytes} B; {s['deliveries']} deliveries, "
        f"{s['delivered']} delivered; downlink wire bytes / (payload + MQTT framing): median "
        f"{s['median']}x, mean {s['mean']}x, worst {s['worst']}x; **{s['within_limit']} of "
        f"{s['deliveries']} within {report.limit}x**. Of the {len(over)} over it, {lost} lost a "
        "frame or resent a segment (TCP resends a lost payload segment whole, also when its "
        "acknowledgement was the frame lost). 1-min load average at each run's start: "
        + ", ".join(f"{x:.1f}" for x in report.load_average)
        + ".",
        "",
        "| run | device | class | ratio | frames down | lost down / up | device resends |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {d.run} | {d.device} | {d.device_class} | {d.ratio:.2f}x | {d.wire_down_packets} | "
        f"{d.lost_down_packets} / {d.lost_up_packets} | {d.tcp_retrans_segs} |"
        for d in report.deliveries
    ]
    return "\n".join([*lines, "", f"![ratios]({plot})", ""])


def plot_ratios(report: RepeatReport, path: Path) -> None:
    ratios = [d.ratio for d in report.deliveries]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(ratios, bins=[1.0 + 0.05 * i for i in range(int((max(ratios) - 1.0) / 0.05) + 3)])
    ax.axvline(report.limit, color="tab:red", linestyle="--", label=f"target {report.limit}x")
    ax.set_xlabel("downlink wire bytes / (payload + MQTT framing)")
    ax.set_ylabel("deliveries")
    ax.set_title(f"PLADA task on {report.profile}: {len(ratios)} deliveries, {report.runs} runs")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.trial.repeat", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="trials, one after the other")
    parser.add_argument("--fleet", default=f"{THIN_PROFILE}:6", help="profile:count,...")
    parser.add_argument("--profile", default=THIN_PROFILE, help="whose deliveries are counted")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="report folder")
    parser.add_argument("--name", default="trial_repeat", help="report file names")
    args, passed = parser.parse_known_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    args.passed = passed  # the rest go to every run (--data, --work, --task, --budget, --tiny)
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    rows: list[Delivery] = []
    loads: list[float] = []
    payload_bytes = 0
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="plada-trial-repeat-") as tmp:
        for run in range(1, args.runs + 1):
            loads.append(os.getloadavg()[0])
            out = Path(tmp) / f"run{run}"
            code = trial_cli.main(
                [*args.passed, "--fleet", args.fleet, "--stages", "plada", "--out", str(out)]
            )
            if code != 0:
                print(f"error: run {run} failed (exit {code})", file=sys.stderr)
                return code
            report = TrialReport.load(out / "trial.json")
            payload_bytes = int(report.task.get("payload_bytes", 0))
            rows += deliveries(report, run=run, profile=args.profile)
            print(f"run {run}/{args.runs}: {len(rows)} deliveries so far", file=sys.stderr)
    if not rows:
        print(f"error: no device on profile {args.profile!r} in --fleet", file=sys.stderr)
        return os.EX_SOFTWARE
    result = RepeatReport(
        profile=args.profile,
        limit=WIRE_LIMIT,
        runs=args.runs,
        payload_bytes=payload_bytes,
        started_at=started,
        load_average=loads,
        deliveries=rows,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    plot = f"{args.name}.png"
    plot_ratios(result, args.out / plot)
    write_text_atomic(args.out / f"{args.name}.json", result.model_dump_json(indent=1) + "\n")
    text = markdown(result, plot)
    write_text_atomic(args.out / f"{args.name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
