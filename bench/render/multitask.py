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
    encoder = [r.encoder_ms_per_image for r in res.rows]
    noise = max(encoder) - min(encoder)  # the same encoder pass in every row
    first, last = res.rows[0], res.rows[-1]
    lines += [
        f"Each task beyond the first adds its head's ONNX run, "
        f"{res.extra_head_ms_per_image:.4f} ms per image, and building its top-k lists in "
        f"Python; never another encoder pass. End to end, {last.tasks} tasks and "
        f"{first.tasks} differ by {last.ms_per_image - first.ms_per_image:+.2f} ms per image, "
        f"inside the {noise:.2f} ms by which the very same encoder pass varied between rows on "
        "this shared machine (load in the header)."
    ]
    if res.extra_separate_ms_per_image is not None:
        lines[-1] += (
            f" k one-task predictors (an encoder pass each) would add "
            f"{res.extra_separate_ms_per_image:.2f} ms per image for every extra task."
        )
    return [*lines, ""]
