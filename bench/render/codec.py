"""### Codec: synthetic selections, and the real selections of the accuracy sweep."""

from __future__ import annotations

from bench.render.text import error_line, table
from bench.schema import SectionError
from bench.schema.accuracy import AccuracyResults
from bench.schema.system import CodecRow

_SMALL_KEEP = 0.02  # the target: >= 20 % smaller than the paper codec at keep <= 2 %


def codec_lines(
    codec: list[CodecRow] | SectionError | None, acc: AccuracyResults | SectionError | None
) -> list[str]:
    lines = ["### Codec", ""]
    if isinstance(codec, list):
        from bench.codec import render_table

        lines += [
            "Synthetic selections (bench/codec.py): selection bytes only (no envelope).",
            "",
            render_table([row.model_dump() for row in codec]),
            "",
        ]
    else:
        lines += error_line("bench.codec", codec)
    if not isinstance(acc, AccuracyResults):
        return lines
    rows, met, total = _real_selection_rows(acc)
    lines += [
        "Real selections (every setting of the accuracy table, first seed): selection bytes, "
        "median over settings.",
        "",
    ]
    lines += table(
        ["task", "keep ratio", "keep", "paper codec", "best codec", "saving vs paper",
         "best / bound"],
        rows,
    )  # fmt: skip
    if total:
        lines += [
            f"Target (ours >= 20 % smaller than the paper codec at keep <= 2 %): met by {met} of "
            f"{total} real selections.",
            "",
        ]
    return lines


def _real_selection_rows(acc: AccuracyResults) -> tuple[list[list[str]], int, int]:
    """(rows, selections meeting the target, selections it applies to)."""
    rows = []
    met = total = 0
    for task, res in acc.tasks.items():
        for keep_ratio in sorted({r.ratio for r in res.ratio_runs}):
            sizes = [r.codec for r in res.ratio_runs if r.ratio == keep_ratio and r.codec]
            if not sizes:
                continue
            keep = next(r.keep for r in res.ratio_runs if r.ratio == keep_ratio and r.codec)
            savings = [1 - c.best_bytes / c.paper_bytes for c in sizes]
            over = [c.best_bytes / max(c.bound_bytes, 1) for c in sizes]
            if keep_ratio <= _SMALL_KEEP:
                met += sum(1 for x in savings if x >= 0.20)
                total += len(savings)
            paper = sorted(c.paper_bytes for c in sizes)
            best = sorted(c.best_bytes for c in sizes)
            rows.append(
                [
                    task,
                    f"{100 * keep_ratio:g} %",
                    f"{keep:,}",
                    f"{paper[len(paper) // 2]:,}",
                    f"{best[len(best) // 2]:,}",
                    f"{100 * min(savings):.0f} to {100 * max(savings):.0f} %",
                    f"{min(over):.2f} to {max(over):.2f}",
                ]
            )
    return rows, met, total
