"""The report folder of a task build: report.json, report.md and PNG plots.

report.json is the source of truth: the Markdown and the plots are rendered from it alone (so
`plada-build report DIR` can re-render them), which is why it also carries the kept-per-class counts
and the energy histograms. Every file is written to a temporary name and moved into place.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from builder.errors import BuilderError

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOT_ACCURACY = "accuracy_vs_bytes.png"
PLOT_KEPT = "kept_per_class.png"
PLOT_ENERGY = "energy_histogram.png"
REQUIRED_KEYS = (
    "teacher_accuracy",
    "device_accuracy",
    "device_oracle_accuracy",
    "strategy",
    "params",
    "payload_bytes",
    "num_indices",
    "leakage_flags",
    "candidates",
)
CANDIDATE_KEYS = ("strategy", "params", "keep", "payload_bytes", "val_accuracy", "test_accuracy")


def energy_histogram(
    energy_all: np.ndarray, kept: np.ndarray, *, bins: int = 50
) -> dict[str, list[float]]:
    """Histogram of all reference energies and of the kept ones, on the same edges."""
    edges = np.histogram_bin_edges(energy_all, bins=bins)
    all_counts, _ = np.histogram(energy_all, bins=edges)
    kept_counts, _ = np.histogram(energy_all[kept], bins=edges)
    return {
        "edges": [float(e) for e in edges],
        "all": [float(c) for c in all_counts],
        "kept": [float(c) for c in kept_counts],
    }


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_report(report: Mapping[str, Any]) -> None:
    """Raise BuilderError naming the first missing key."""
    for key in REQUIRED_KEYS:
        if key not in report:
            raise BuilderError(f"report is missing key {key!r}")
    for i, cand in enumerate(report["candidates"]):
        for key in CANDIDATE_KEYS:
            if key not in cand:
                raise BuilderError(f"report candidate {i} is missing key {key!r}")


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.1f} %"


def _params_text(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "-"


def render_markdown(report: Mapping[str, Any]) -> str:
    """A human summary of report.json."""
    corpus = report.get("corpus", {})
    lines = [
        f"# Task `{report.get('task', '?')}`: builder report",
        "",
        f"Corpus `{corpus.get('fingerprint', '?')[:16]}` ({corpus.get('size', '?')} images); "
        f"budget {report.get('budget', '?')}; "
        f"teacher encoder `{report.get('teacher', {}).get('encoder', '?')}`.",
        "",
        "| | accuracy | balanced accuracy |",
        "| --- | --- | --- |",
        f"| teacher (test) | {_pct(report['teacher_accuracy'])} | "
        f"{_pct(report.get('teacher', {}).get('balanced_accuracy'))} |",
    ]
    for device, result in report.get("devices", {}).items():
        lines.append(
            f"| device `{device}` (test) | {_pct(result['accuracy'])} | "
            f"{_pct(result['balanced_accuracy'])} |"
        )
        lines.append(
            f"| device-oracle `{device}` (whole train split) | {_pct(result['oracle_accuracy'])} | "
            f"{_pct(result['oracle_balanced_accuracy'])} |"
        )
    lines += [
        "",
        f"**Chosen:** `{report['strategy']}` ({_params_text(report['params'])}), "
        f"{report['num_indices']} indices, **{report['payload_bytes']} bytes** signed payload"
        + (f" (`{report['payload_file']}`)" if report.get("payload_file") else "")
        + ".",
        "",
    ]
    validation = report.get("validation", {})
    if validation:
        lines += [
            f"Chosen by {validation.get('metric', 'accuracy')} on {validation.get('repeats')} x "
            f"{validation.get('num_folds')}-fold splits of the train split (never test); tie "
            f"tolerance {_pct(validation.get('tie_tolerance'))}.",
            "",
        ]
    for note in report.get("notes", []):
        lines.append(f"- {note}")
    leak = report.get("leakage", {})
    lines += [
        f"**Leakage:** {report['leakage_flags']} test images have a reference image at feature "
        f"cosine > {leak.get('threshold', '?')}.",
        "",
        "## Candidates",
        "",
        "val = mean over validation folds (balanced accuracy); test = default device class.",
        "",
        "| strategy | params | keep | bytes | val | val std | test acc | test bal. acc |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cand in report["candidates"]:
        mark = " **(chosen)**" if cand.get("chosen") else ""
        lines.append(
            f"| {cand['strategy']}{mark} | {_params_text(cand['params'])} | {cand['keep']} | "
            f"{cand['payload_bytes']} | {_pct(cand['val_accuracy'])} | "
            f"{_pct(cand.get('val_std'))} | {_pct(cand['test_accuracy'])} | "
            f"{_pct(cand.get('test_balanced_accuracy'))} |"
        )
    timings = report.get("timings_s", {})
    if timings:
        lines += ["", "## Timings", "", "| stage | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v:.2f} |" for k, v in timings.items()]
    lines += [
        "",
        f"![accuracy vs bytes]({PLOT_ACCURACY}) ![kept per class]({PLOT_KEPT}) "
        f"![energy]({PLOT_ENERGY})",
        "",
    ]
    return "\n".join(lines)


def _savefig(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def render_plots(report: Mapping[str, Any], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    # Accuracy vs payload bytes, one line per strategy setting.
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series: dict[str, list[tuple[int, float]]] = {}
    for cand in report["candidates"]:
        label = cand["strategy"]
        if cand["params"] and cand["strategy"] == "safety-net":
            label += f" ({_params_text(cand['params'])})"
        series.setdefault(label, []).append((int(cand["payload_bytes"]), cand["test_accuracy"]))
    for label, points in sorted(series.items()):
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    chosen = [c for c in report["candidates"] if c.get("chosen")]
    if chosen:
        ax.scatter(
            [chosen[0]["payload_bytes"]],
            [chosen[0]["test_accuracy"]],
            s=200,
            facecolors="none",
            edgecolors="black",
            label="chosen",
        )
    ax.axhline(
        report["device_oracle_accuracy"], color="black", linestyle="--", label="device-oracle"
    )
    ax.axhline(report["teacher_accuracy"], color="gray", linestyle=":", label="teacher")
    ax.set_xlabel("signed payload bytes")
    ax.set_ylabel("test accuracy (default device class)")
    ax.set_title(f"{report.get('task', '')}: accuracy vs payload size")
    ax.legend(fontsize=7, loc="lower right")
    _savefig(fig, out_dir / PLOT_ACCURACY)
    plt.close(fig)
    paths.append(out_dir / PLOT_ACCURACY)
    # Kept images per class.
    names: Sequence[str] = report.get("class_names", [])
    kept = report.get("kept_per_class", [])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(len(kept)), kept)
    ax.set_xticks(range(len(kept)), [str(n) for n in names][: len(kept)], rotation=45, ha="right")
    ax.set_ylabel("kept reference images")
    ax.set_title("kept images per pseudo-label")
    _savefig(fig, out_dir / PLOT_KEPT)
    plt.close(fig)
    paths.append(out_dir / PLOT_KEPT)
    # Energy histogram, kept vs all.
    hist = report.get("energy_histogram")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    if hist:
        edges = np.asarray(hist["edges"])
        widths = np.diff(edges)
        ax.bar(edges[:-1], hist["all"], width=widths, align="edge", alpha=0.5, label="all")
        ax.bar(edges[:-1], hist["kept"], width=widths, align="edge", alpha=0.8, label="kept")
        ax.set_yscale("log")
        ax.legend()
    ax.set_xlabel("teacher energy (low = in-distribution)")
    ax.set_ylabel("reference images")
    _savefig(fig, out_dir / PLOT_ENERGY)
    plt.close(fig)
    paths.append(out_dir / PLOT_ENERGY)
    return paths


def write_report(report: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """Write report.json, report.md and the plots into out_dir; returns the paths written."""
    check_report(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2, sort_keys=False, allow_nan=False) + "\n"
    atomic_write_bytes(out_dir / REPORT_JSON, text.encode("utf-8"))
    atomic_write_bytes(out_dir / REPORT_MD, render_markdown(report).encode("utf-8"))
    return [out_dir / REPORT_JSON, out_dir / REPORT_MD, *render_plots(report, out_dir)]


def load_report(path: Path) -> dict[str, Any]:
    """Read report.json from a report folder (or the file itself) and check its keys."""
    path = Path(path)
    if path.is_dir():
        path = path / REPORT_JSON
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BuilderError(f"no report at {path}") from exc
    except json.JSONDecodeError as exc:
        raise BuilderError(f"{path} is not valid JSON: {exc}") from exc
    check_report(report)
    return report
