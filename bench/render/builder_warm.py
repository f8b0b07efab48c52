"""### Builder on a warm cache: stage times of one task before and after, and whether the
results stayed the same."""

from __future__ import annotations

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.warm import BuilderWarmResults, WarmBuild

STAGES = ("read_target", "features", "views", "teacher", "candidates", "validation")
STAGES_AFTER = ("payload", "simulate", "leakage")
SETTING_NAMES = {"one": "one teacher", "two": "two teachers"}


def _seconds(build: WarmBuild | None) -> str:
    if build is None:
        return "n/a"
    if build.error is not None or build.total_s is None:
        return f"failed ({build.error})"
    return f"{build.total_s:.1f}"


def _cpu(build: WarmBuild | None) -> str:
    return "n/a" if build is None or build.cpu_s is None else f"{build.cpu_s:.1f}"


def _stages(build: WarmBuild | None) -> str:
    if build is None or not build.timings_s:
        return "n/a"
    shown = [s for s in (*STAGES, *STAGES_AFTER) if s in build.timings_s]
    return ", ".join(f"{s} {build.timings_s[s]:.1f}" for s in shown)


def _same(before: WarmBuild | None, after: WarmBuild | None) -> str:
    if before is None or after is None or before.result is None or after.result is None:
        return "n/a"
    return "yes" if before.result == after.result else "**no**"


def builder_warm_lines(result: BuilderWarmResults | SectionError | None) -> list[str]:
    lines = ["### Builder on a warm cache", ""]
    if not isinstance(result, BuilderWarmResults):
        return lines + error_line("bench.builder_warm", result)
    before, after = result.runs.get("before"), result.runs.get("after")
    if after is None:
        return [*lines, "_bench.builder_warm: no run of the current code yet._", ""]
    first = next(iter(after.runs.values()), None)
    loads = [b.load_average_1min for b in after.runs.values() if b.load_average_1min is not None]
    lines += [
        f"`python -m bench.builder_warm`: `plada-build task --auto --budget {after.budget} "
        f"--views {after.views}` as the real CLI, the reference corpus's features cached "
        "(under every encoder, and the proposed view with views on); *first* = the task's own "
        "images never embedded before, *again* = a second build of it. Teachers: "
        + ", ".join(f"{SETTING_NAMES.get(k, k)} `{v}`" for k, v in after.teachers.items())
        + f". Before = commit `{before.commit if before else 'n/a'}`, after = commit "
        f"`{after.commit}`; {after.machine.cpu_model}, {after.machine.nproc} cores shared with "
        f"other jobs (1-min load average {min(loads, default=0):.1f} to "
        f"{max(loads, default=0):.1f} at the builds' starts). Seconds: the report's total, wall "
        "time, which the other jobs stretch; CPU seconds: the whole build process, all threads, "
        "start-up included (roughly what an idle machine would take); stage seconds after the "
        "change; same = equal choice, selection digest and accuracies as the build before "
        "(before's first build for an *again*: the code before had no image cache). "
        "Targets: 30 s with one teacher, 60 s with two.",
        "",
    ]
    rows = []
    for key, build in after.runs.items():
        task, setting, attempt = key.split("/")
        old = before.runs.get(key) if before else None
        first = before.runs.get(f"{task}/{setting}/first") if before else None
        rows.append(
            [
                task,
                SETTING_NAMES.get(setting, setting),
                attempt,
                _seconds(old),
                f"**{_seconds(build)}**",
                _cpu(old),
                f"**{_cpu(build)}**",
                _stages(build),
                "n/a" if build.peak_rss_mb is None else f"{build.peak_rss_mb:,.0f}",
                _same(old or first, build),
            ]
        )
    lines += table(
        ["task", "teachers", "build", "before s", "after s", "before CPU s", "after CPU s",
         "after: stages s", "peak RSS MB", "same"],
        rows,
    )  # fmt: skip
    if first is not None and first.result is not None:
        r = first.result
        lines += [
            f"Chosen (first build): teacher `{r.teacher}`, {r.strategy}, {r.num_indices:,} "
            f"images in {r.payload_bytes:,} B, device accuracy {100 * r.device_accuracy:.1f} %.",
            "",
        ]
    return lines
