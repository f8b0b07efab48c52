"""### Choosing for the fleet with views: issue 16's targets, in the configuration they are set in
(`--auto` validating the four Lite device classes, views on, 3 seeds), with the payloads applied to
the ResNet-50 class and set beside real images at the same bytes (bench.alternatives)."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from bench.render.text import budget_bytes, error_line, mean_of, table
from bench.schema import SectionError
from bench.schema.common import metric_name
from bench.schema.comparisons import AlternativesResults
from bench.schema.fleet_targets import FleetBuildRow, FleetTargetsResults

TASK_ORDER = ("digits", "fashion", "clipart")


EVERY_CLASS = "every Lite class"
DEFAULT_CLASS = "default"


@dataclass(frozen=True)
class RatioTarget:
    """Issue 16: device / its own oracle at least `at_least` for `who`: every validated class,
    the default one, or the named class."""

    task: str
    budget: str
    who: str
    at_least: float
    max_sd_points: float | None = None  # spread over seeds of the default class's score


# Issue 16's "Targets" (reported against, never used to choose anything).
RATIO_TARGETS = (
    RatioTarget("digits", "2KiB", DEFAULT_CLASS, 0.85),
    RatioTarget("digits", "8KiB", DEFAULT_CLASS, 0.88),
    RatioTarget("fashion", "2KiB", DEFAULT_CLASS, 0.98),
    RatioTarget("fashion", "8KiB", DEFAULT_CLASS, 1.02),
    RatioTarget("clipart", "8KiB", DEFAULT_CLASS, 0.95, max_sd_points=1.5),
    RatioTarget("digits", "8KiB", EVERY_CLASS, 0.80),
    RatioTarget("fashion", "8KiB", EVERY_CLASS, 0.90),
    RatioTarget("clipart", "8KiB", EVERY_CLASS, 0.90),
    RatioTarget("fashion", "2KiB", "opennsfw-224", 0.85),
    RatioTarget("clipart", "2KiB", "opennsfw-224", 0.85),
)
TEACHER_MARGIN_TASKS = ("fashion", "clipart")
TEACHER_MARGIN = 0.03


def groups(res: FleetTargetsResults) -> dict[tuple[str, str], list[FleetBuildRow]]:
    """The defaults' builds (mode `after`) per (task, budget), tasks in the usual order."""
    out: dict[tuple[str, str], list[FleetBuildRow]] = {}
    for row in res.rows:
        if row.mode == "after":
            out.setdefault((row.task, row.budget), []).append(row)
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    return dict(
        sorted(out.items(), key=lambda kv: (order.get(kv[0][0], 99), budget_bytes(kv[0][1])))
    )


def _spread(values: Sequence[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def class_ratios(rows: Iterable[FleetBuildRow], name: str) -> list[float]:
    """The class's ratio to its own oracle in every build that measured it."""
    return [
        r
        for row in rows
        if (c := row.classes.get(name)) is not None and (r := c.ratio(row.task)) is not None
    ]


def class_means(rows: Sequence[FleetBuildRow], names: Iterable[str]) -> dict[str, float]:
    """Each class's ratio to its own oracle, mean over the builds that measured it."""
    return {n: statistics.fmean(v) for n in names if (v := class_ratios(rows, n))}


def worst_class(rows: Sequence[FleetBuildRow], names: Iterable[str]) -> tuple[str, float] | None:
    means = class_means(rows, names)
    if not means:
        return None
    name = min(means, key=means.__getitem__)
    return name, means[name]


def _ratio_cell(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    mean, sd = _spread(values)
    return f"{100 * mean:.0f} %" + ("" if sd is None else f" ± {100 * sd:.1f}")


def teacher_margins(rows: Iterable[FleetBuildRow], names: Iterable[str]) -> list[float]:
    """Per build: the teacher's score minus the best of the named classes' own oracles (the
    validated classes: theirs are on the same whole test split as the teacher's)."""
    names = list(names)
    out = []
    for row in rows:
        teacher = row.teacher_score()
        oracles = [
            o for n in names if (c := row.classes.get(n)) and (o := c.oracle(row.task)) is not None
        ]
        if teacher is not None and oracles:
            out.append(teacher - max(oracles))
    return out


def view_labels(res: FleetTargetsResults) -> dict[str, str]:
    """Each distinct chosen view -> `V1`, `V2`, ... (described once under the table)."""
    views = dict.fromkeys(row.view for row in res.rows if row.view)
    return {view: f"V{i + 1}" for i, view in enumerate(views) if view}


def _chosen(rows: Sequence[FleetBuildRow], labels: Mapping[str, str]) -> str:
    return ", ".join(
        f"{labels.get(r.view, 'no view') if r.view else 'no view'} / `{r.strategy}` / {r.teacher}"
        for r in rows
    )


def _worst(rows: Sequence[FleetBuildRow], classes: Sequence[str]) -> str:
    worst = worst_class(rows, classes)
    return "n/a" if worst is None else f"`{worst[0]}` {100 * worst[1]:.0f} %"


def _teacher_cell(rows: Sequence[FleetBuildRow], classes: Sequence[str]) -> str:
    margins = teacher_margins(rows, classes)
    teachers = [t for r in rows if (t := r.teacher_score()) is not None]
    if not margins or not teachers:
        return "n/a"
    teacher, margin = statistics.fmean(teachers), statistics.fmean(margins)
    return f"{100 * teacher:.1f} vs {100 * (teacher - margin):.1f} ({100 * margin:+.1f})"


def real_images(images: AlternativesResults | None, task: str, budget: str) -> float | None:
    """Real train images at the same byte budget on the default class (bench.alternatives), in
    the task's metric, mean over seeds."""
    if images is None or task not in images.tasks:
        return None
    for row in images.tasks[task].summary.budgets:
        if row.budget == budget:
            return mean_of(row.images.of(task))
    return None


def _default_score(rows: Sequence[FleetBuildRow], default: str) -> float | None:
    scores = [
        s
        for r in rows
        if (c := r.classes.get(default)) is not None and (s := c.accuracy(r.task)) is not None
    ]
    return statistics.fmean(scores) if scores else None


def _images_cell(rows: Sequence[FleetBuildRow], default: str, images: float | None) -> str:
    ours = _default_score(rows, default)
    if ours is None or images is None:
        return "n/a"
    return f"{100 * ours:.1f} vs {100 * images:.1f}"


def images_target(res: FleetTargetsResults, images: AlternativesResults | None) -> list[list[str]]:
    """Issue 16: ahead of real images at equal bytes, for every task and budget measured here."""
    default = res.classes[0]
    cases = []
    for (task, budget), rows in groups(res).items():
        ours, theirs = _default_score(rows, default), real_images(images, task, budget)
        if ours is not None and theirs is not None:
            cases.append((f"{task} {budget}", ours > theirs))
    asked = f"`{default}` ahead of real images at equal bytes"
    if not cases:
        return [[asked, "not measured (no bench.alternatives results)", "n/a"]]
    behind = [name for name, ahead in cases if not ahead]
    measured = f"ahead in {len(cases) - len(behind)} of {len(cases)} cases" + (
        f" (behind: {', '.join(behind)})" if behind else ""
    )
    return [[asked, measured, "missed" if behind else "met"]]


def target_rows(
    res: FleetTargetsResults, images: AlternativesResults | None = None
) -> list[list[str]]:
    """Each of issue 16's targets that this run measures: what it asks, what was measured, met."""
    by_group = groups(res)
    default = res.classes[0]
    rows: list[list[str]] = []
    for t in RATIO_TARGETS:
        builds = by_group.get((t.task, t.budget))
        names = {EVERY_CLASS: res.classes, DEFAULT_CLASS: [default]}.get(t.who, [t.who])
        who = (
            f"`{default}`"
            if t.who == DEFAULT_CLASS
            else (t.who if t.who == EVERY_CLASS else f"`{t.who}`")
        )
        asked = f"{t.task} {t.budget}: {who} >= {100 * t.at_least:.0f} % of its own oracle"
        if t.max_sd_points is not None:
            asked += f", sd over seeds <= {t.max_sd_points} points"
        if not builds:
            rows.append([asked, "not run", "n/a"])
            continue
        worst = worst_class(builds, names)
        if worst is None:
            rows.append([asked, "not measured", "n/a"])
            continue
        name, mean = worst
        met = mean >= t.at_least
        measured = f"{100 * mean:.1f} %" + (f" (`{name}`)" if t.who == EVERY_CLASS else "")
        if t.max_sd_points is not None:
            scores = [s for b in builds if (s := b.classes[default].accuracy(b.task)) is not None]
            sd = statistics.stdev(scores) * 100 if len(scores) > 1 else None
            measured += ", sd " + ("n/a (one seed)" if sd is None else f"{sd:.1f} points")
            met = met and sd is not None and sd <= t.max_sd_points
        rows.append([asked, measured + f", {len(builds)} seed(s)", "met" if met else "missed"])
    for task in TEACHER_MARGIN_TASKS:
        builds = [b for (name, _), bs in by_group.items() if name == task for b in bs]
        asked = (
            f"{task}: teacher >= every validated class's oracle + {100 * TEACHER_MARGIN:.0f} points"
        )
        margins = teacher_margins(builds, res.classes)
        if not margins:
            rows.append([asked, "not run", "n/a"])
            continue
        lowest = min(margins)
        rows.append(
            [
                asked,
                f"{100 * lowest:+.1f} points (the worst of {len(margins)} builds)",
                "met" if lowest >= TEACHER_MARGIN else "missed",
            ]
        )
    return rows + images_target(res, images)


def fleet_targets_lines(
    res: FleetTargetsResults | SectionError | None,
    plots: Mapping[str, str],
    images: AlternativesResults | None = None,
) -> list[str]:
    title = "### Choosing for the fleet with views (issue 16's targets)"
    if res is None:
        return []
    if not isinstance(res, FleetTargetsResults):
        return [title, "", *error_line("fleet_targets", res)]
    classes = res.classes
    grouped = groups(res)
    seeds = sorted({row.seed for rows in grouped.values() for row in rows})
    labels = view_labels(res)
    applied_names = ", ".join(f"`{a}`" for a in res.applied)
    applied = (
        f" Then each payload is applied, as bench.hetero does, to {applied_names} (not "
        "validated: its whole-corpus embedding is too costly here), at the budgets bench.hetero "
        f"runs it at, on a stratified subset of at most {res.max_test_images or 'all'} test images."
        if res.applied
        else ""
    )
    lines = [
        title,
        "",
        "The `fleet_targets` module of `make bench` (`make bench-fleet` alone, "
        "`bench/fleet_choice.py`): `plada-build task --auto --devices "
        f"{res.devices} --views {res.views or 'auto'}` with the builder's defaults otherwise "
        "(worst class's validated ratio to its own oracle, finalists on repeated folds), seeds "
        f"{', '.join(map(str, seeds))}.{applied} Per class: the payload's simulated test score "
        "over the class's own oracle (the same head on the labelled train split), mean ± sample "
        "standard deviation over seeds in ratio points; clipart in balanced accuracy. *teacher vs "
        "best oracle*: the chosen teacher's test score and the best validated class's oracle "
        f"(difference in points). *real images*: `{classes[0]}`'s score on this payload vs the "
        "real train images that fit the same budget (bench.alternatives). *build s*: wall time of "
        "`plada-build task`, the median over seeds (a task's first build also embeds the corpus "
        "under its view for every class).",
        "",
    ]
    if "fleet_targets" in plots:
        lines += [f"![every Lite class against its own oracle]({plots['fleet_targets']})", ""]
    header = ["task", "budget", "chosen (per seed: view / strategy / teacher)", "keep", "bytes"]
    header += [f"`{c}`" for c in classes] + [f"`{c}` (applied)" for c in res.applied]
    header += ["worst class", "teacher vs best oracle", "real images", "build s (median)"]
    body = []
    for (task, budget), rows in grouped.items():
        body.append(
            [
                task,
                budget,
                _chosen(rows, labels),
                f"{statistics.fmean(r.keep for r in rows):,.0f}",
                f"{statistics.fmean(r.payload_bytes for r in rows):,.0f}",
                *(_ratio_cell(class_ratios(rows, c)) for c in (*classes, *res.applied)),
                _worst(rows, classes),
                _teacher_cell(rows, classes),
                _images_cell(rows, classes[0], real_images(images, task, budget)),
                f"{statistics.median(r.wall_s for r in rows):,.0f}",
            ]
        )
    lines += table(header, body)
    lines += [f"- {label}: `{view}`" for view, label in labels.items()]
    lines += [f"- `{spec}` not measured: {why}" for spec, why in res.unavailable.items()]
    lines += [
        f"- **failed**: {f.task} {f.budget} seed {f.seed} (not in the table): `{f.error}`"
        for f in res.failed
    ]
    if labels or res.unavailable or res.failed:
        lines.append("")
    lines += [f"Issue 16's targets measured here ({metric_name('clipart')} for clipart):", ""]
    lines += table(["target", "measured", ""], target_rows(res, images))
    return lines
