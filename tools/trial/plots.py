"""The trial report's plots (PNG, matplotlib's Agg backend: no display needed).

- time to ready per profile, for each way of delivering the task (one dot per device; a device
  that did not finish in the stage's time is drawn at the limit with an open marker);
- bytes on the wire per device (downlink, kernel counters), for each way of delivery;
- accuracy per device class (each device's own head on the task's test images).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the backend

from tools.trial.report_files import KINDS
from tools.trial.report_model import TrialReport

COLOURS = {"plada": "tab:green", "images": "tab:red", "weights": "tab:blue"}


def plot_ready(report: TrialReport, path: Path) -> None:
    profiles = list(dict.fromkeys(d.profile for d in report.devices))
    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(KINDS)
    for k, kind in enumerate(KINDS):
        stage = report.stage(kind)
        if stage is None:
            continue
        for p, profile in enumerate(profiles):
            x = p - 0.4 + width * (k + 0.5)
            rows = [r for r in stage.rows if r.profile == profile]
            done = [r.time_to_ready_s for r in rows if r.time_to_ready_s is not None]
            late = [stage.timeout_s for r in rows if r.time_to_ready_s is None]
            ax.scatter([x] * len(done), done, color=COLOURS[kind], s=24, zorder=3)
            ax.scatter([x] * len(late), late, facecolors="none", edgecolors=COLOURS[kind], s=40)
        ax.scatter([], [], color=COLOURS[kind], label=kind)
    ax.set_xticks(range(len(profiles)), profiles)
    ax.set_yscale("log")
    ax.set_ylabel("publish -> ready on the device (s, log)")
    ax.set_title("Time to ready per link profile (open marker: not done in the stage's time)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bytes(report: TrialReport, path: Path) -> None:
    devices = [d.name for d in report.devices]
    fig, ax = plt.subplots(figsize=(max(8, 0.75 * len(devices)), 4.5))
    width = 0.8 / len(KINDS)
    for k, kind in enumerate(KINDS):
        stage = report.stage(kind)
        if stage is None:
            continue
        by_device = {r.device: r for r in stage.rows}
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(devices))]
        heights = [by_device[n].wire_down_bytes for n in devices]
        hatches = ["" if by_device[n].delivered else "//" for n in devices]
        bars = ax.bar(xs, heights, width, color=COLOURS[kind], label=kind)
        for bar, hatch in zip(bars, hatches, strict=True):
            bar.set_hatch(hatch)
    ax.set_xticks(range(len(devices)), devices, rotation=30, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("bytes on the wire, broker -> device (log)")
    ax.set_title("Bytes on the wire per device (kernel counters; hatched: not delivered in time)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_accuracy(report: TrialReport, path: Path) -> None:
    stage = report.stage("plada")
    classes = list(dict.fromkeys(d.device_class for d in report.devices))
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, device_class in enumerate(classes):
        values = [
            r.accuracy
            for r in (stage.rows if stage else [])
            if r.device_class == device_class and r.accuracy is not None
        ]
        if values:
            ax.bar(i, sum(values) / len(values), 0.6, color="tab:green", alpha=0.5)
            ax.scatter([i] * len(values), values, color="black", s=16, zorder=3)
    encoders = {d.device_class: d.encoder for d in report.devices}
    ax.set_xticks(range(len(classes)), [f"{c}\n{encoders[c]}" for c in classes])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy on the task's test images")
    ax.set_title("Accuracy per device class (bar: mean, dots: devices)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(report: TrialReport, folder: Path, name: str) -> dict[str, str]:
    """Write the three PNGs next to the report; title -> file name (for markdown links)."""
    plots = {
        "time to ready per profile": (f"{name}_ready.png", plot_ready),
        "bytes on the wire per device": (f"{name}_bytes.png", plot_bytes),
        "accuracy per device class": (f"{name}_accuracy.png", plot_accuracy),
    }
    for file_name, plot in plots.values():
        plot(report, folder / file_name)
    return {title: file_name for title, (file_name, _) in plots.items()}
