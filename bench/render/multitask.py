"""### Several tasks per device: predict latency per image with 1, 2 and 5 installed tasks."""

from __future__ import annotations

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.system import MultitaskResults


def multitask_lines(res: MultitaskResults | SectionError | None) -> list[str]:
    if res is None:
        return []
    lines = ["### Several tasks per device", ""]
    if not isinstance(res, MultitaskResults):
        return lines + error_line("bench.multitask", res)
    lines += [
        f"`plada-agent predict` with k installed tasks (bench/multitask.py): encoder {res.encoder} "
        f"(D={res.feature_dim}), {res.threads} threads, batch {res.batch_size}, {res.images} "
        "corpus images; one encoder pass per image feeds every head. Beside it, what k one-task "
        "predictors (one encoder pass each) would cost.",
        "",
    ]
    rows = [
        [
            str(r.tasks),
            f"{r.ms_per_image:.2f}",
            f"{r.encoder_ms_per_image:.2f}",
            f"{r.heads_ms_per_image:.3f}",
            f"{r.separate_passes_ms_per_image:.2f}",
        ]
        for r in res.rows
    ]
    lines += table(
        [
            "installed tasks",
            "predict ms/image",
            "encoder ms/image",
            "all heads ms/image",
            "k separate passes ms/image",
        ],
        rows,
    )
    lines += [
        f"Each task beyond the first costs {res.extra_task_ms_per_image:.3f} ms per image end to "
        f"end ({res.extra_head_ms_per_image:.3f} ms of head time): the head only, not another "
        "encoder pass.",
        "",
    ]
    return lines
