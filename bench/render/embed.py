"""### Embedding pipeline: `plada-build embed` against the bare ORT session, per encoder."""

from __future__ import annotations

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.embed import EmbedResults


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def embed_lines(result: EmbedResults | SectionError | None) -> list[str]:
    lines = ["### Embedding pipeline", ""]
    if not isinstance(result, EmbedResults):
        return lines + error_line("bench.embed_pipeline", result)
    m = result.machine
    lines += [
        f"`python -m bench.embed_pipeline`: {result.sample.images:,} images of ref-v1 "
        f"({result.sample.how}), best of {result.repeats} alternating passes per way, one "
        f"process, {m.cpus or '?'} cores (1-min load average {m.loadavg_start} at the start, "
        f"{m.loadavg_end} at the end; other jobs shared the machine). *Pipeline* = "
        f"`embed_corpus` into a fresh cache (read, decode, preprocess, embed, write, merge; "
        f"decode batch {result.batch_size}, {result.run_rows} rows per ORT run); *bare* = one "
        "InferenceSession on the same images already preprocessed, with ORT's default options "
        f"({result.batch_size} rows per run) and with plada's (no spinning, "
        f"{result.run_rows} rows per run). Images/s, and images per CPU second (median; "
        "user + system time of all threads), which other jobs on the machine disturb less. "
        "Ratios of the pipeline to the better bare way: best run to best run, the median of "
        "each pass's own ratio (the three ways of a pass run back to back, under the same "
        "load) and per CPU second. Targets: pipeline >= 80 % of the bare session (judged on "
        "the per-pass ratio), system time < 10 %.",
        "",
    ]
    rows = []
    for row in result.encoders:
        p, d, t = row.pipeline, row.bare_default, row.bare_tuned
        bare_cpu = max(d.images_per_cpu_s or 0.0, t.images_per_cpu_s or 0.0)
        cpu = "n/a" if row.cpu_ratio_to_best_bare is None else f"{row.cpu_ratio_to_best_bare:.2f}"
        rows.append(
            [
                row.encoder,
                _rate(p.images_per_s),
                _rate(d.images_per_s),
                _rate(t.images_per_s),
                f"{row.ratio_to_best_bare:.2f}",
                "n/a" if row.paired_ratio is None else f"**{row.paired_ratio:.2f}**",
                f"{_rate(p.images_per_cpu_s)} / {_rate(bare_cpu)}",
                cpu,
                f"{100 * p.sys_share:.1f} %",
                f"{100 * max(d.sys_share, t.sys_share):.1f} %",
                f"{p.minor_faults_per_image:.0f}"
                if p.minor_faults_per_image is not None
                else "n/a",
                "met" if row.meets_targets else "missed",
            ]
        )
    lines += table(
        [
            "encoder",
            "pipeline img/s",
            "bare (ORT defaults)",
            "bare (tuned)",
            "best / best",
            "per pass (median)",
            "img per CPU s: pipeline / bare",
            "CPU ratio",
            "pipeline sys",
            "bare sys (max)",
            "faults / image",
            "targets",
        ],
        rows,
    )
    return lines
