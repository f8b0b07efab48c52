"""### Heterogeneous devices: one payload on device classes with different encoders."""

from __future__ import annotations

from collections.abc import Mapping

from bench.render.text import error_line, mean_of, pm, ratio, table
from bench.schema import SectionError
from bench.schema.comparisons import HeteroResults


def _intro(het: HeteroResults) -> str:
    teachers = het.teacher_encoders or [het.teacher_encoder]
    subset = (
        f" Test splits over {het.max_test_images:,} images are evaluated on a seeded "
        "class-stratified subset of that size, the same for every class and its oracle."
        if het.max_test_images
        else ""
    )
    limits = "".join(
        f" `{spec}` runs at {', '.join(limit)} only (embedding cost)."
        for spec, limit in het.budget_limits.items()
        if list(limit) != list(het.budgets if het.budgets is not None else limit)
    )
    return (
        f"The `--auto` payloads chosen for `{het.payloads_chosen_for}` (teachers "
        + ", ".join(f"`{t}`" for t in teachers)
        + ", the better-validating one per build, as in the accuracy table), applied unchanged "
        "on each device class with its own encoder; each compared with its own device-oracle "
        "(same encoder, head trained on the labelled train split)." + subset + limits
    )


def hetero_lines(het: HeteroResults | SectionError | None, plots: Mapping[str, str]) -> list[str]:
    lines = ["### Heterogeneous devices: one payload, different encoders", ""]
    if not isinstance(het, HeteroResults):
        return lines + error_line("hetero", het)
    lines += [_intro(het), ""]
    if "hetero" in plots:
        lines += [f"![heterogeneous devices]({plots['hetero']})", ""]
    rows = []
    unavailable: dict[str, str] = {}
    for task, res in het.tasks.items():
        unavailable.update(res.unavailable)
        rows += [
            [
                task,
                r.budget,
                r.device_class,
                f"`{r.encoder}`",
                pm(r.device.of(task)),
                pm(r.oracle.of(task)),
                ratio(mean_of(r.relative.of(task))),
            ]
            for r in res.summary
        ]
    header = ["task", "budget", "device class", "encoder", "device", "own oracle"]
    lines += table([*header, "device / oracle"], rows)
    lines += [f"- `{spec}` not measured: {why}" for spec, why in unavailable.items()]
    if unavailable:
        lines.append("")
    return lines
