"""The Results' PNG plots (matplotlib Agg), one function per section that has one."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from bench.render.text import mean_of
from bench.schema import BenchResults
from bench.schema.accuracy import AccuracyResults, AccuracyTask
from bench.schema.common import Stat, metric_name
from bench.schema.comparisons import AlternativesResults, AltTask, HeteroResults
from bench.schema.corpus_scale import CorpusScaleResults
from bench.schema.fleet import FleetResults
from bench.schema.fleet_targets import FleetTargetsResults

T = TypeVar("T")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _percent(value: float | None) -> float:
    return 100 * (value or 0)


def _accuracy_axis(ax: Any, task: str, res: AccuracyTask) -> None:
    s = res.summary
    for setting in dict.fromkeys(r.setting for r in s.ratios):
        rows = sorted((r for r in s.ratios if r.setting == setting), key=lambda r: r.ratio)
        ax.plot(
            [mean_of(r.payload_bytes) for r in rows],
            [_percent(mean_of(r.device.of(task))) for r in rows],
            marker=".",
            linewidth=1,
            label=setting,
        )
    if s.budgets:
        sds = [b.device.of(task) for b in s.budgets]
        ax.errorbar(
            [mean_of(b.payload_bytes) for b in s.budgets],
            [_percent(mean_of(b.device.of(task))) for b in s.budgets],
            yerr=[100 * float((sd.sd if isinstance(sd, Stat) else 0) or 0) for sd in sds],
            fmt="k*",
            markersize=10,
            label="--auto (byte budgets)",
        )
    ax.axhline(_percent(mean_of(s.teacher.of(task))), color="grey", linestyle="--", label="teacher")
    oracle = mean_of(s.oracle.of(task))
    if oracle is not None:
        ax.axhline(100 * oracle, color="black", linestyle=":", label="device-oracle")
    ax.set_xscale("log")
    ax.set_xlabel("signed payload bytes")
    ax.set_ylabel(f"device {metric_name(task)} (%)")
    ax.set_title(task)
    ax.grid(alpha=0.3)


def _per_task(tasks: Mapping[str, T], draw: Callable[[Any, str, T], None], path: Path) -> Path:
    """One axis per task, side by side, the legend on the last."""
    fig, axes = _pyplot().subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
    for ax, (task, res) in zip(axes[0], tasks.items(), strict=True):
        draw(ax, task, res)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _alternatives_axis(ax: Any, task: str, res: AltTask) -> None:
    budgets = res.summary.budgets
    xs = [b.budget_bytes for b in budgets]
    for label, series in (
        ("PLADA --auto", [b.plada for b in budgets]),
        ("random reference", [b.random for b in budgets]),
        ("real images (best format)", [b.images for b in budgets]),
    ):
        ys = [mean_of(scores.of(task)) for scores in series]
        ax.plot(xs, [100 * y if y is not None else math.nan for y in ys], marker="o", label=label)
    for head, marker, color in (("teacher_head", "s", "black"), ("device_head", "^", "grey")):
        weights = res.weights[head]
        for r in weights.rows:
            if r.precision == "fp32":
                continue
            ax.scatter(
                [r.bytes],
                [_percent(mean_of(r.device.of(task)))],
                marker=marker,
                edgecolors=color,
                facecolors="none" if r.precision == "int4" else color,
                label=f"{weights.encoder} head {r.precision} (exact encoder only)",
            )
    fl = res.summary.fl
    ax.scatter(
        [fl.bytes_per_device],
        [_percent(mean_of(fl.device.of(task)))],
        marker="x",
        color="red",
        label="1 FL round",
    )
    ax.set_xscale("log")
    ax.set_xlabel("bytes per device")
    ax.set_ylabel(f"{metric_name(task)} (%)")
    ax.set_title(task)
    ax.grid(alpha=0.3)


def plot_hetero(het: HeteroResults, path: Path) -> Path | None:
    """Device vs own oracle per class, at the budget every class runs (the first)."""
    rows = [
        (task, r)
        for task, res in het.tasks.items()
        for r in res.summary
        if r.budget == res.summary[0].budget
    ]
    if not rows:
        return None
    fig, ax = _pyplot().subplots(figsize=(max(6.0, 0.9 * len(rows)), 4.5))
    xs = list(range(len(rows)))
    device = [_percent(mean_of(r.device.of(t))) for t, r in rows]
    oracle = [_percent(mean_of(r.oracle.of(t))) for t, r in rows]
    ax.bar([x - 0.2 for x in xs], device, width=0.4, label="PLADA payload")
    ax.bar([x + 0.2 for x in xs], oracle, width=0.4, label="own device-oracle")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{t}\n{r.encoder}" for t, r in rows], fontsize=7, rotation=45, ha="right")
    ax.set_ylabel("accuracy (%) (clipart: balanced)")
    ax.set_title(f"one payload ({rows[0][1].budget}), device classes with their own encoders")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_fleet(fleet: FleetResults, path: Path) -> Path | None:
    """Time to ready (left) and the broker's CPU and memory (right) against fleet size, one
    line per payload size."""
    if not fleet.runs:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    mem = right.twinx()
    for size in sorted({r.payload_bytes for r in fleet.runs}):
        rows = sorted((r for r in fleet.runs if r.payload_bytes == size), key=lambda r: r.agents)
        xs = [r.agents for r in rows]
        label = f"{size:,} B ({rows[0].messages} messages)"
        ready = [r.all_ready_s if r.all_ready_s is not None else math.nan for r in rows]
        line = left.plot(xs, ready, marker="o", label=f"all ready, {label}")[0]
        left.plot(xs, [r.ready_median_s or math.nan for r in rows], marker=".", linestyle="--",
                  color=line.get_color(), label=f"median, {label}")  # fmt: skip
        right.plot(xs, [r.broker_usage.cpu_s for r in rows], marker="o", color=line.get_color(),
                   label=f"broker CPU s, {label}")  # fmt: skip
        mem.plot(xs, [r.broker_usage.peak_rss_mb for r in rows], marker="s", linestyle=":",
                 color=line.get_color(), label=f"broker peak RSS, {label}")  # fmt: skip
    left.axhline(fleet.target.all_ready_s, color="red", linestyle=":", label="target")
    left.set_xlabel("agents")
    left.set_ylabel("seconds from the publish")
    left.set_title("time to ready")
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    right.set_xlabel("agents")
    right.set_ylabel("broker CPU seconds per rollout")
    mem.set_ylabel("broker peak RSS (MB)")
    right.set_ylim(bottom=0)
    mem.set_ylim(bottom=0)
    right.set_title("mosquitto (from /proc)")
    right.grid(alpha=0.3)
    handles = right.get_legend_handles_labels()
    extra = mem.get_legend_handles_labels()
    right.legend(handles[0] + extra[0], handles[1] + extra[1], fontsize=7, loc="upper left")
    return _save(fig, path)


_SCALE_STAGES = (  # (label, SizeRow field, time attribute)
    ("corpus build", "build", "wall_s"),
    ("verify", "verify", "wall_s"),
    ("embed (lite0-64-int8)", "embed", "wall_s"),
    ("builder task", "builder", "wall_s"),
    ("apply cold", "apply_cold", "payload_to_model_s"),
    ("apply warm", "apply_warm", "payload_to_model_s"),
)


def plot_corpus_scale(result: CorpusScaleResults, path: Path) -> Path | None:
    """Seconds (left) and peak RSS (right) of every stage against corpus size, log-log."""
    rows = sorted(result.sizes, key=lambda r: r.images)
    if not rows:
        return None
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, field, attr in _SCALE_STAGES:
        points = [(r.images, getattr(r, field)) for r in rows if getattr(r, field) is not None]
        if not points:
            continue
        xs = [x for x, _ in points]
        line = left.plot(xs, [getattr(m, attr) for _, m in points], marker="o", label=label)[0]
        right.plot(xs, [m.peak_rss_mb for _, m in points], marker="o", label=label,
                   color=line.get_color())  # fmt: skip
    t = result.targets
    right.axhline(t.builder_peak_rss_mb, color="red", linestyle=":", label="builder target")
    right.axhline(t.apply_warm_rss_mb, color="purple", linestyle=":", label="apply warm target")
    left.axhline(t.apply_warm_s, color="purple", linestyle=":", label="apply warm target")
    for ax, ylabel, title in (
        (left, "seconds", "time"),
        (right, "peak RSS (MB)", "peak resident memory"),
    ):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("corpus images")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_fleet_targets(res: FleetTargetsResults, path: Path) -> Path | None:
    """Per task, per budget: every class's device / own-oracle ratio (mean over seeds)."""
    from bench.render.fleet_targets import class_means, groups

    grouped = groups(res)
    tasks = list(dict.fromkeys(task for task, _ in grouped))
    if not tasks:
        return None
    classes = res.classes
    fig, axes = _pyplot().subplots(1, len(tasks), figsize=(4.2 * len(tasks), 4), squeeze=False)
    width = 0.8 / len(classes)
    for ax, task in zip(axes[0], tasks, strict=True):
        budgets = [b for t, b in grouped if t == task]
        means = [class_means(grouped[(task, b)], classes) for b in budgets]
        for i, name in enumerate(classes):
            heights = [100 * m.get(name, 0.0) for m in means]
            xs = [j + (i - (len(classes) - 1) / 2) * width for j in range(len(budgets))]
            ax.bar(xs, heights, width=width, label=name)
        ax.axhline(100, color="black", linestyle=":", linewidth=1)
        ax.set_xticks(range(len(budgets)))
        ax.set_xticklabels(budgets)
        ax.set_title(f"{task} ({metric_name(task)})")
        ax.set_ylabel("device / own oracle (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower left")
    return _save(fig, path)


def make_plots(results: BenchResults, out_dir: Path) -> dict[str, Path]:
    """PNG plots of whichever sections exist; {name: path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    if isinstance(results.accuracy, AccuracyResults) and results.accuracy.tasks:
        paths["accuracy"] = _per_task(
            results.accuracy.tasks, _accuracy_axis, out_dir / "accuracy_per_byte.png"
        )
    if isinstance(results.alternatives, AlternativesResults) and results.alternatives.tasks:
        paths["alternatives"] = _per_task(
            results.alternatives.tasks, _alternatives_axis, out_dir / "alternatives.png"
        )
    if isinstance(results.hetero, HeteroResults) and results.hetero.tasks:
        hetero = plot_hetero(results.hetero, out_dir / "hetero.png")
        if hetero is not None:
            paths["hetero"] = hetero
    if isinstance(results.fleet, FleetResults):
        fleet = plot_fleet(results.fleet, out_dir / "fleet.png")
        if fleet is not None:
            paths["fleet"] = fleet
    if isinstance(results.fleet_targets, FleetTargetsResults):
        targets = plot_fleet_targets(results.fleet_targets, out_dir / "fleet_targets.png")
        if targets is not None:
            paths["fleet_targets"] = targets
    if isinstance(results.corpus_scale, CorpusScaleResults):
        scale = plot_corpus_scale(results.corpus_scale, out_dir / "corpus_scale.png")
        if scale is not None:
            paths["corpus_scale"] = scale
    return paths
