"""report.md: a human summary rendered from report.json's record alone."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from builder.report.model import BuildReport, ParamValue

PLOT_ACCURACY = "accuracy_vs_bytes.png"
PLOT_KEPT = "kept_per_class.png"
PLOT_ENERGY = "energy_histogram.png"


def pct(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * float(value):.1f} %"


def params_text(params: Mapping[str, ParamValue]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "-"


def _accuracy_table(report: BuildReport) -> list[str]:
    teacher = report.teacher
    lines = [
        "| | accuracy | balanced accuracy |",
        "| --- | --- | --- |",
        f"| teacher (test) | {pct(report.teacher_accuracy)} | "
        f"{pct(teacher.balanced_accuracy if teacher else None)} |",
    ]
    for device, result in report.devices.items():
        lines.append(
            f"| device `{device}` (test) | {pct(result.accuracy)} | "
            f"{pct(result.balanced_accuracy)} |"
        )
        lines.append(
            f"| device-oracle `{device}` (whole train split) | {pct(result.oracle_accuracy)} | "
            f"{pct(result.oracle_balanced_accuracy)} |"
        )
    return lines


def _candidates_table(report: BuildReport) -> list[str]:
    lines = [
        "## Candidates",
        "",
        "val = mean over validation folds (balanced accuracy); test = default device class.",
        "",
        "| strategy | params | keep | bytes | val | val std | test acc | test bal. acc |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cand in report.candidates:
        mark = " **(chosen)**" if cand.chosen else ""
        lines.append(
            f"| {cand.strategy}{mark} | {params_text(cand.params)} | {cand.keep} | "
            f"{cand.payload_bytes} | {pct(cand.val_accuracy)} | "
            f"{pct(cand.val_std)} | {pct(cand.test_accuracy)} | "
            f"{pct(cand.test_balanced_accuracy)} |"
        )
    return lines


def _views_table(report: BuildReport) -> list[str]:
    """The payload's view and every candidate view's validated score (builds with views)."""
    if report.view_choice is None:
        return []
    lines = [
        "",
        "## Views",
        "",
        f"Payload view: `{report.view.description if report.view else 'none'}`.",
        "",
        "| view | val | val std | teacher | strategy | keep |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in report.view_choice:
        mark = " **(chosen)**" if row.chosen else ""
        lines.append(
            f"| `{row.view}`{mark} | {pct(row.val_accuracy)} | {pct(row.val_std)} | "
            f"{row.teacher} | {row.strategy} | {row.keep} |"
        )
    return lines


def _fleet_table(report: BuildReport) -> list[str]:
    """Builds validating several device classes: each class's expected and simulated accuracy
    against its own oracle, and the worst class."""
    fleet = report.fleet
    if fleet is None:
        return []
    lines = [
        "",
        "## Device classes",
        "",
        f"Chosen for the fleet: {fleet.description}. Worst class (validated): "
        f"`{fleet.worst_class}` at {pct(fleet.worst_val_ratio)} of its own oracle"
        + (f"; on the test split: `{fleet.worst_test_class}`." if fleet.worst_test_class else "."),
        "",
    ]
    if fleet.fleet_counts:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(fleet.fleet_counts.items()))
        lines += [f"Fleet composition from `{fleet.source}`: {counts}.", ""]
    lines += [
        "| class | weight | expected (val) | own oracle (val) | ratio (val) | simulated (test) "
        "| own oracle (test) | ratio (test) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, c in fleet.classes.items():
        mark = " **(worst)**" if name == fleet.worst_class else ""
        weight = "-" if c.weight is None else f"{c.weight:g}"
        lines.append(
            f"| `{name}`{mark} | {weight} | {pct(c.val_accuracy)} | {pct(c.val_oracle)} | "
            f"{pct(c.val_ratio)} | {pct(c.test_accuracy)} | {pct(c.test_oracle)} | "
            f"{pct(c.test_ratio)} |"
        )
    lines.append("")
    lines.append("Balanced accuracies; val = mean over the chosen candidate's validation splits.")
    return lines


def _validation_text(report: BuildReport) -> list[str]:
    validation = report.validation
    if validation is None:
        return []
    text = (
        f"Chosen by {validation.metric} on {validation.repeats} x "
        f"{validation.num_folds}-fold splits of the train split (never test); tie "
        f"tolerance {pct(validation.tie_tolerance)}."
    )
    if validation.finalists:
        text += (
            f" The {validation.finalists} best candidates were validated on "
            f"{validation.finalist_repeats} x {validation.num_folds}-fold more splits."
        )
    if validation.chosen_std is not None and validation.chosen_splits:
        text += (
            f" The chosen candidate's validated score: {pct(report.accuracy_estimate)} "
            f"+- {pct(validation.chosen_std)} (std over {validation.chosen_splits} splits)"
        )
        if validation.objective_mean is not None:
            text += (
                f"; fleet objective ({validation.objective}) {pct(validation.objective_mean)} "
                f"+- {pct(validation.objective_std)}"
            )
        text += "."
    return [text, ""]


def _teacher_search_table(report: BuildReport) -> list[str]:
    """Every teacher candidate's k-fold score, and the teacher beside every device's oracle."""
    search = report.teacher_search
    if search is None:
        return []
    kind = report.teacher.kind if report.teacher else None
    lines = [
        "",
        "## Teacher",
        "",
        f"Teacher kind `{kind or '?'}`. Candidates searched on {search.num_folds}-fold splits "
        "of the train split (val: mean balanced accuracy on held-out folds; test: refitted on "
        "the whole train split, for information only).",
        "",
        "| candidate | hyperparameters | val | val std | test acc |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in search.candidates:
        mark = " **(search's choice)**" if row.chosen else ""
        lines.append(
            f"| {row.name}{mark} | {params_text(row.hyper)} | {pct(row.val_accuracy)} | "
            f"{pct(row.val_std)} | {pct(row.test_accuracy)} |"
        )
    if search.device_val_accuracy is not None:
        lines += [
            "",
            f"The search's teacher validated {pct(search.device_val_accuracy)} on the device; "
            f"it is kept only when that beats every plain teacher by more than "
            f"{pct(search.device_tie_tolerance)}.",
        ]
    lines += [
        "",
        "| teacher (test) vs device-oracle | oracle | teacher - oracle |",
        "| --- | --- | --- |",
    ]
    for device, result in report.devices.items():
        margin = 100 * (report.teacher_accuracy - result.oracle_accuracy)
        lines.append(f"| `{device}` | {pct(result.oracle_accuracy)} | {margin:+.1f} points |")
    return lines


def render_markdown(report: BuildReport | Mapping[str, Any]) -> str:
    report = BuildReport.parse(report)
    corpus, leak = report.corpus, report.leakage
    lines = [
        f"# Task `{report.task or '?'}`: builder report",
        "",
        f"Corpus `{corpus.fingerprint[:16] if corpus else '?'}` "
        f"({corpus.size if corpus else '?'} images); budget {report.budget or '?'}; "
        f"teacher encoder `{report.teacher.encoder if report.teacher else '?'}`.",
        "",
        *_accuracy_table(report),
        "",
        f"**Chosen:** `{report.strategy}` ({params_text(report.params)}), "
        f"{report.num_indices} indices, **{report.payload_bytes} bytes** signed payload"
        + (f" (`{report.payload_file}`)" if report.payload_file else "")
        + ".",
        "",
    ]
    lines += _validation_text(report)
    lines += [f"- {note}" for note in report.notes]
    lines += [
        f"**Leakage:** {report.leakage_flags} test images have a reference image at feature "
        f"cosine > {leak.threshold if leak else '?'}.",
        "",
        *_candidates_table(report),
        *_fleet_table(report),
        *_views_table(report),
        *_teacher_search_table(report),
    ]
    if report.timings_s:
        lines += ["", "## Timings", "", "| stage | seconds |", "| --- | --- |"]
        lines += [f"| {k} | {v:.2f} |" for k, v in report.timings_s.items()]
    lines += [
        "",
        f"![accuracy vs bytes]({PLOT_ACCURACY}) ![kept per class]({PLOT_KEPT}) "
        f"![energy]({PLOT_ENERGY})",
        "",
    ]
    return "\n".join(lines)
