"""The lines above the Results: when, where, on what, how long."""

from __future__ import annotations

from bench.render.text import duration
from bench.schema.system import RunMeta


def header_lines(meta: RunMeta) -> list[str]:
    m = meta.machine
    timings = ", ".join(f"{k} {duration(v)}" for k, v in meta.timings.items())
    lines = [
        "Measured by `make bench` (`python -m bench.run`)"
        + (f" at commit `{meta.git_commit}`" if meta.git_commit else "")
        + f" on {meta.date}: {m.cpu_model}, {m.nproc or '?'} cores "
        f"(1-min load average {m.loadavg_start if m.loadavg_start is not None else '?'} at the "
        f"start), {m.ram_gib if m.ram_gib is not None else '?'} GiB RAM, Python {m.python}. "
        f"Total run time **{duration(meta.total_seconds)}**"
        + (f" ({timings})" if timings else "")
        + "."
        + (
            f" The modules ran in {meta.invocations} invocations of `bench.run` (some side by "
            f"side on the {m.nproc or '?'} cores); the run time is the sum of the modules' times."
            if meta.invocations > 1
            else ""
        ),
        *_memory_lines(meta),
        "",
        f"Data: `{meta.data}` ({meta.corpus_size or '?'} reference images). "
        f"Seeds: {', '.join(map(str, meta.seeds))}. Teacher encoder "
        f"`{meta.teacher_encoder}`, default device class encoder "
        f"`{meta.device}` (every encoder runs as its ONNX export, as on devices and in "
        "`make builder`).",
        "",
    ]
    lines += [f"- **Reduced:** {note}" for note in meta.reduced]
    if meta.reduced:
        lines.append("")
    return lines


def _memory_lines(meta: RunMeta) -> list[str]:
    """Peak resident memory per module (bench.peak_memory), where the run recorded it."""
    if not meta.peak_rss_mb:
        return []
    peaks = ", ".join(f"{k} {v / 1024:.2f}" for k, v in meta.peak_rss_mb.items())
    top = max(meta.peak_rss_mb, key=lambda k: meta.peak_rss_mb[k])
    return [
        "",
        f"Peak resident memory per module in GB (the bench process during the module, or the "
        f"largest child it ran if larger): {peaks}; the largest, {top}, "
        f"**{meta.peak_rss_mb[top] / 1024:.2f} GB**.",
    ]
