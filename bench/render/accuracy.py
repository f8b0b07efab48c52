"""### Accuracy per byte: --auto at byte budgets and every setting at keep ratios, per task."""

from __future__ import annotations

from collections.abc import Mapping

from bench.render.text import error_line, mean_of, num, pm, table
from bench.schema import SectionError
from bench.schema.accuracy import AccuracyResults, AccuracyTask
from bench.schema.common import metric_name


def accuracy_lines(
    acc: AccuracyResults | SectionError | None, plots: Mapping[str, str]
) -> list[str]:
    lines = ["### Accuracy per byte", ""]
    if not isinstance(acc, AccuracyResults):
        return lines + error_line("accuracy", acc)
    lines += [
        f"Device class `{acc.device}` (its own encoder's features, the agent's head trainer), "
        f"teacher `{acc.teacher_encoder}` for the strategy sweeps; `--auto` is the builder's "
        "default, one build per teacher encoder keeping the better-validating one (its choice "
        f"is shown as setting / teacher), corpus of {acc.corpus.size:,} images (1 % = "
        f"{round(acc.corpus.size / 100):,} images). Mean ± sample standard deviation over "
        f"seeds {', '.join(map(str, acc.seeds))}. Bytes are whole signed payloads. The "
        "device-oracle is the same device head trained on the whole labelled train split.",
        "",
    ]
    if "accuracy" in plots:
        lines += [f"![accuracy per byte]({plots['accuracy']})", ""]
    for task, res in acc.tasks.items():
        s = res.summary
        lines += [
            f"**{task}** ({metric_name(task)}; {res.train_images} train / "
            f"{res.test_images} test images, {res.num_classes} classes): teacher "
            f"{pm(s.teacher.of(task))}, device-oracle {pm(s.oracle.of(task))}.",
            "",
        ]
        lines += _budget_table(task, res)
        lines += _ratio_table(task, res)
    return lines


def _budget_table(task: str, res: AccuracyTask) -> list[str]:
    s = res.summary
    oracle = mean_of(s.oracle.of(task))
    rows = []
    for b in s.budgets:
        cap = b.settings_at_cap
        best = max(cap, key=lambda k: mean_of(cap[k].device.of(task)) or -1.0, default=None)
        value = mean_of(b.device.of(task))
        rows.append(
            [
                b.budget,
                ", ".join(f"`{c}`" for c in b.auto_choices),
                num(b.keep),
                num(b.payload_bytes),
                pm(b.device.of(task)),
                f"{100 * value / oracle:.0f} %" if value is not None and oracle else "n/a",
                f"`{best}` {pm(cap[best].device.of(task))}" if best else "n/a",
                pm(cap["random"].device.of(task)) if "random" in cap else "n/a",
            ]
        )
    header = [
        "budget",
        "--auto chose (per seed: setting / teacher)",
        "keep",
        "bytes",
        "--auto",
        "/ oracle",
        "best setting at the cap (test, hindsight)",
        "random at the cap",
    ]
    return table(header, rows)


def _ratio_table(task: str, res: AccuracyTask) -> list[str]:
    rows_in = res.summary.ratios
    ratios = sorted({r.ratio for r in rows_in})
    settings = list(dict.fromkeys(r.setting for r in rows_in))
    rows = []
    for setting in settings:
        row = [f"`{setting}`"]
        for ratio in ratios:
            cell = [r for r in rows_in if r.setting == setting and r.ratio == ratio]
            row.append(
                f"{pm(cell[0].device.of(task))} ({num(cell[0].payload_bytes)} B)" if cell else ""
            )
        rows.append(row)
    keeps = {r.ratio: r.keep for r in rows_in}
    rows.append(["keep (images)", *[f"{keeps[r]:,}" for r in ratios]])
    return table(["setting", *[f"{100 * r:g} %" for r in ratios]], rows)
