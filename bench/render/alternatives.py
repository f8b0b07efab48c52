"""### The alternatives at equal bytes: real images, weights, one FL round, random selection."""

from __future__ import annotations

from collections.abc import Mapping

from bench.render.text import error_line, num, pm, table
from bench.schema import SectionError
from bench.schema.comparisons import AlternativesResults


def _intro(alt: AlternativesResults) -> str:
    return (
        "PLADA `--auto` and random reference selection (teacher labels) are signed payloads at or "
        "under the budget. Real images: a class-balanced sample of the train split at most the "
        f"device's input size ({', '.join(alt.formats)}, Zstd-19, a few header bytes per image, "
        "no signature), the format that fits the most images; the device head trained on them. "
        "Weights: the teacher's head over corpus-standardised features (the device computes the "
        "corpus statistics itself), int8/int4 + Zstd-19, "
        "**valid only on a device running exactly the teacher's encoder** "
        f"(`{alt.teacher_encoder}`); the device-class head likewise only for devices of "
        f"exactly `{alt.device}`."
    )


def _budget_rows(alt: AlternativesResults) -> list[list[str]]:
    return [
        [
            task,
            b.budget,
            pm(b.plada.of(task)),
            pm(b.random.of(task)),
            f"{pm(b.images.of(task))} ({num(b.images_count)} img, "
            f"{'/'.join(b.images_best_format)})",
            ", ".join(b.teacher_head_fits) or "none",
        ]
        for task, res in alt.tasks.items()
        for b in res.summary.budgets
    ]


def _weight_rows(alt: AlternativesResults) -> list[list[str]]:
    rows = []
    for task, res in alt.tasks.items():
        for head in ("teacher_head", "device_head"):
            h = res.weights[head]
            rows += [
                [
                    task,
                    f"`{h.encoder}` {r.precision} ({r.scheme})",
                    f"{r.bytes:,}",
                    pm(r.device.of(task)),
                    h.valid_for,
                ]
                for r in h.rows
            ]
    return rows


def alternatives_lines(
    alt: AlternativesResults | SectionError | None, plots: Mapping[str, str]
) -> list[str]:
    lines = ["### The alternatives at equal bytes", ""]
    if not isinstance(alt, AlternativesResults):
        return lines + error_line("alternatives", alt)
    lines += [_intro(alt), ""]
    if "alternatives" in plots:
        lines += [f"![alternatives at equal bytes]({plots['alternatives']})", ""]
    lines += table(
        ["task", "budget", "PLADA --auto", "random reference", "real images (count, format)",
         "teacher head fits (exact encoder only)"],
        _budget_rows(alt),
    )  # fmt: skip
    lines += table(
        ["task", "head weights", "bytes", "accuracy (clipart: balanced)", "valid for"],
        _weight_rows(alt),
    )
    fl_rows = [
        [
            task,
            f"{res.fl[0].devices} x {res.fl[0].images_per_device}",
            f"{res.summary.fl.bytes_per_device:,}",
            pm(res.summary.fl.device.of(task)),
        ]
        for task, res in alt.tasks.items()
    ]
    lines += [
        "One federated-learning round of the same head (FedAvg of locally trained heads; the "
        "devices hold the labelled train split, IID): bytes down + up per device, fp32.",
        "",
    ]
    return lines + table(["task", "devices x images", "bytes per device", "accuracy"], fl_rows)
