"""### Device on a Raspberry-Pi-4-like budget: one core, a memory cap; payload to model for
1,000 / 5,000 / 20,000 kept images, warm and cold, and predict latency."""

from __future__ import annotations

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.warm import BudgetApply, DeviceBudgetResults


def _failed(error: str | None) -> str:
    """A failed run's cell: out of memory named as such, else the error's end."""
    text = error or "no result"
    if "alloc" in text.lower() or "memory" in text.lower():
        return "failed: out of memory"
    return f"failed ({text[-60:]})"


def _run(run: BudgetApply) -> tuple[str, str, str]:
    if run.error is not None or run.payload_to_model_s is None:
        return _failed(run.error), "n/a", "n/a"
    rss = "n/a" if run.peak_rss_mb is None else f"{run.peak_rss_mb:,.0f}"
    cpu = "n/a" if run.process_cpu_s is None else f"{run.process_cpu_s:.2f}"
    return f"{run.payload_to_model_s:.2f}", cpu, rss


def device_budget_lines(result: DeviceBudgetResults | SectionError | None) -> list[str]:
    lines = ["### Device on a Raspberry-Pi-4-like budget", ""]
    if not isinstance(result, DeviceBudgetResults):
        return lines + error_line("bench.device_budget", result)
    c, s, load = result.constraint, result.settings, result.load_average_1min
    lines += [
        f"`python -m bench.device --budget-only`: the real `plada-agent apply` CLI pinned to "
        f"one core (`{c.cpu}`) with its private memory capped (`{c.memory}`; this machine's "
        "systemd is not PID 1, so no cgroup `MemoryMax`), the raspberry-pi-4 profile's "
        f"settings with one encoder thread (`{s.get('encoder', '?')}`, batch "
        f"{s.get('batch_size', '?')}, {s.get('dtype', '?')} cache, head "
        f"`{s.get('head_backend', '?')}`, verified corpus reads), ref-v1 "
        f"({result.corpus_images:,} images), {result.machine.cpu_model}, 1-min load average "
        f"{load.start} at the start and {load.end} at the end (other jobs on the other core). "
        "Warm = every kept image's features in the device cache; cold = an empty cache, every "
        "kept image read, decoded and embedded on demand. Seconds from payload bytes to a "
        "stored model (best of 3 warm, of 1-2 cold; wall time, which the other jobs stretch), "
        "CPU seconds of the whole process (interpreter start and imports included: what an "
        "idle core would take) and its peak RSS (VmHWM). Target: 5,000 kept images warm "
        "<= 2 s and <= 250 MB.",
        "",
    ]
    before = {(r.kept_images, r.cap_mb): r for r in result.before.apply} if result.before else {}
    rows = []
    for row in result.apply:
        cap = "n/a" if row.cap_mb is None else f"{row.cap_mb}"
        old = before.get((row.kept_images, row.cap_mb))
        was = "n/a"
        if old is not None:
            parts = []
            for run in (old.warm, old.cold):
                secs, _, rss = _run(run)
                parts.append(secs if secs.startswith("failed") else f"{secs} s, {rss} MB")
            was = " / ".join(parts)
        rows.append([f"{row.kept_images:,}", cap, *_run(row.warm), *_run(row.cold), was])
    lines += table(
        ["kept images", "cap MiB", "warm s", "warm process CPU s", "warm peak RSS MB",
         "cold s", "cold process CPU s", "cold peak RSS MB", "before: warm / cold"],
        rows,
    )  # fmt: skip
    p = result.predict
    if p.error is None and p.single_ms_median is not None:
        lines += [
            f"Predict on the same budget ({p.images} fashion test images, the 5,000-image "
            f"task's head): **{p.single_ms_median:.1f} ms** per single image (median; p95 "
            f"{p.single_ms_p95:.1f} ms: decode, preprocess, encoder, head), "
            f"{p.batched_ms_per_image:.2f} ms per image in batches of {p.batch_size}.",
            "",
        ]
    else:
        lines += [f"_Predict failed: `{p.error}`_", ""]
    return lines
