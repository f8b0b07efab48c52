"""The report's PNG plots (matplotlib, Agg), rendered from report.json's record alone."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from builder.report.markdown import PLOT_ACCURACY, PLOT_ENERGY, PLOT_KEPT, params_text
from builder.report.model import BuildReport
from plada.atomic import write_bytes_atomic


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    write_bytes_atomic(path, buf.getvalue(), mode=0o644)
    return path


def plot_accuracy_vs_bytes(report: BuildReport, path: Path) -> Path:
    """Test accuracy against payload bytes, one line per strategy setting."""
    fig, ax = _pyplot().subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for cand in report.candidates:
        label = cand.strategy
        if cand.params and cand.strategy == "safety-net":
            label += f" ({params_text(cand.params)})"
        series.setdefault(label, []).append((cand.payload_bytes, cand.test_accuracy))
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    chosen = report.chosen_candidate
    if chosen is not None:
        ax.scatter(
            [chosen.payload_bytes],
            [chosen.test_accuracy],
            s=200,
            facecolors="none",
            edgecolors="black",
            label="chosen",
        )
    ax.axhline(report.device_oracle_accuracy, color="black", linestyle="--", label="device-oracle")
    ax.axhline(report.teacher_accuracy, color="gray", linestyle=":", label="teacher")
    ax.set_xlabel("signed payload bytes")
    ax.set_ylabel("test accuracy (default device class)")
    ax.set_title(f"{report.task or ''}: accuracy vs payload size")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_kept_per_class(report: BuildReport, path: Path) -> Path:
    kept = report.kept_per_class
    fig, ax = _pyplot().subplots(figsize=(7, 3.5))
    ax.bar(range(len(kept)), kept)
    ticks = [str(n) for n in report.class_names][: len(kept)]
    ax.set_xticks(range(len(kept)), ticks, rotation=45, ha="right")
    ax.set_ylabel("kept reference images")
    ax.set_title("kept images per pseudo-label")
    return _save(fig, path)


def plot_energy(report: BuildReport, path: Path) -> Path:
    """Energy histogram of the whole corpus and of the kept images (log counts)."""
    hist = report.energy_histogram
    fig, ax = _pyplot().subplots(figsize=(7, 3.5))
    if hist:
        edges = np.asarray(hist.edges)
        widths = np.diff(edges)
        ax.bar(edges[:-1], hist.all, width=widths, align="edge", alpha=0.5, label="all")
        ax.bar(edges[:-1], hist.kept, width=widths, align="edge", alpha=0.8, label="kept")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("teacher energy (low = in-distribution)")
    ax.set_ylabel("reference images")
    return _save(fig, path)


def render_plots(report: BuildReport, out_dir: Path) -> list[Path]:
    return [
        plot_accuracy_vs_bytes(report, out_dir / PLOT_ACCURACY),
        plot_kept_per_class(report, out_dir / PLOT_KEPT),
        plot_energy(report, out_dir / PLOT_ENERGY),
    ]
