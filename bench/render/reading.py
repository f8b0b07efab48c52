"""### Reading: a few sentences computed from the numbers (every figure comes from the results)."""

from __future__ import annotations

import statistics

from bench.render.text import budget_bytes, mean_of, pct, pm
from bench.schema import BenchResults
from bench.schema.accuracy import AccuracyResults
from bench.schema.comparisons import AlternativesResults, AltTask, HeteroResults

# The paper's own figures (../shared/docs/paper.md): student and teacher accuracy at 1 % of
# ImageNet-21K, payloads of 85-206 KiB. Quoted, not measured here: the Reading compares ratios.
PAPER_1PCT_STUDENT_TEACHER = {
    "Caltech-101": (79.8, 98.4),
    "CIFAR-10": (63.3, 98.2),
    "CUB-200": (82.5, 97.7),
    "DTD": (66.7, 77.5),
    "FGVC-Aircraft": (53.6, 86.5),
    "Food-101": (75.5, 90.0),
    "Flowers": (96.9, 99.0),
    "Pets": (91.0, 93.4),
    "Places365": (23.4, 55.5),
    "RESISC45": (58.2, 96.8),
}
PAPER_1PCT_KIB = (85, 206)


def reading_lines(results: BenchResults) -> list[str]:
    lines = ["### Reading", ""]
    if isinstance(results.alternatives, AlternativesResults):
        lines += _alternatives_lines(results.alternatives)
    if isinstance(results.hetero, HeteroResults):
        lines += _hetero_line(results.hetero)
    if isinstance(results.accuracy, AccuracyResults):
        lines += _paper_line(results.accuracy)
        lines += _strategy_line(results.accuracy)
    return [*lines, ""]


def _plada_at(task: str, res: AltTask) -> dict[str, float]:
    """{budget: PLADA --auto mean} of one task."""
    out = {}
    for b in res.summary.budgets:
        value = mean_of(b.plada.of(task))
        if value is not None:
            out[b.budget] = value
    return out


def _alternatives_lines(alt: AlternativesResults) -> list[str]:
    wins: list[str] = []
    losses: list[str] = []
    for task, res in alt.tasks.items():
        plada_at = _plada_at(task, res)
        for b in res.summary.budgets:
            images, plada = mean_of(b.images.of(task)), plada_at.get(b.budget)
            if plada is None or images is None:
                continue
            item = f"{task} {b.budget} ({pct(images)} vs PLADA {pct(plada)})"
            (wins if plada > images else losses).append(item)
    lines = [
        f"- **PLADA vs sending images at equal bytes:** PLADA is ahead in {len(wins)} of "
        f"{len(wins) + len(losses)} task/budget cases"
        + (f"; real images win in {', '.join(losses)}" if losses else "")
        + ". Why: a kept reference image costs about a byte of index and label, a real image "
        "tens to hundreds of bytes even tiny and compressed, so at a few KiB PLADA trains on "
        "hundreds to thousands of examples where the image budget holds a handful. Images "
        "win when they are tiny (8x8 digits: a few dozen bytes each) and when the teacher's "
        "labels on the reference images are a poor stand-in for the target (the corpus's "
        "digits are 28x28 MNIST, the target's 8x8 scans; the heterogeneous table shows how "
        "much the device encoder then matters)."
    ]
    lines += _selection_line(alt)
    lines += _weights_line(alt)
    fl = [
        f"{task} {res.summary.fl.bytes_per_device:,} B per device, "
        f"{pm(res.summary.fl.device.of(task))}"
        for task, res in alt.tasks.items()
    ]
    lines.append(
        "- **Federated learning:** one round of the same head costs "
        + "; ".join(fl)
        + " (down + up). It needs labelled data on every device and two transfers of a "
        "head per round; PLADA needs no labels on the device and one broadcast of a few KiB."
    )
    return lines


def _weights_line(alt: AlternativesResults) -> list[str]:
    heads = []
    for task, res in alt.tasks.items():
        rows = {r.precision: r for r in res.weights["teacher_head"].rows}
        if "int4" not in rows or "fp32" not in rows:
            continue
        int4, fp32 = mean_of(rows["int4"].device.of(task)), mean_of(rows["fp32"].device.of(task))
        change = 100 * ((int4 or 0.0) - (fp32 or 0.0))
        plada_at = _plada_at(task, res)
        fits = [b for b in plada_at if budget_bytes(b) >= rows["int4"].bytes]
        heads.append(
            f"{task}: {rows['int4'].bytes:,} B, {pct(int4)} ({change:+.1f} points vs fp32)"
            + (
                f", PLADA at {fits[0]}: {pct(plada_at[fits[0]])}"
                if fits
                else ", larger than every budget measured"
            )
        )
    if not heads:
        return []
    return [
        "- **Sending weights:** the teacher's int4 head is "
        + "; ".join(heads)
        + ". Where it fits, it carries the teacher itself, which a student trained on "
        "pseudo-labelled reference images only approaches: weights win **if** every "
        "device runs exactly the teacher's encoder. To any other encoder they are "
        "meaningless (another feature space), and that is the case PLADA is for."
    ]


def _selection_line(alt: AlternativesResults) -> list[str]:
    """PLADA's chosen selection vs random reference images with the same teacher's labels."""
    gaps: list[tuple[float, str]] = []
    for task, res in alt.tasks.items():
        for b in res.summary.budgets:
            plada, rand = mean_of(b.plada.of(task)), mean_of(b.random.of(task))
            if plada is not None and rand is not None:
                gaps.append((100 * (plada - rand), f"{task} {b.budget}"))
    if not gaps:
        return []
    clear = [f"{name} ({gap:+.1f})" for gap, name in gaps if gap >= 1.0]
    rest = [gap for gap, _ in gaps if gap < 1.0]
    return [
        f"- **Selection vs random reference images** (same labels, same bytes): `--auto` is "
        f"ahead by a point or more in {len(clear)} of {len(gaps)} task/budget cases"
        + (f": {', '.join(clear)}" if clear else "")
        + (f"; in the others it is {min(rest):+.1f} to {max(rest):+.1f} points" if rest else "")
        + " (random is one of the candidates `--auto` validates). Choosing which images to "
        "send pays where the teacher's labels on a random reference image are mostly useless "
        "for the target (ref-v1's MNIST for the 8x8 digits: see the label ceiling in Builder "
        "results); where they are mostly right, the number of labelled images is what counts."
    ]


def _hetero_line(het: HeteroResults) -> list[str]:
    rels = [
        (value, f"{task} {r.budget} on `{r.encoder}`")
        for task, res in het.tasks.items()
        for r in res.summary
        if (value := mean_of(r.relative.of(task))) is not None
    ]
    if not rels:
        return []
    lo, hi = min(rels), max(rels)
    return [
        f"- **Heterogeneous devices:** the same payload reaches {100 * lo[0]:.0f} % "
        f"({lo[1]}) to {100 * hi[0]:.0f} % ({hi[1]}) of each device class's own "
        "oracle, most of them encoders the builder's teacher never ran: labels on shared "
        "images travel across encoders, weights do not."
    ]


def _paper_line(acc: AccuracyResults) -> list[str]:
    """Student as a fraction of its teacher: the one ratio that travels between the paper's
    setting and ours (corpus, tasks, teacher and student all differ)."""
    ours: list[tuple[float, str, str]] = []  # (student / teacher, task, budget)
    for task, res in acc.tasks.items():
        teacher = mean_of(res.summary.teacher.of(task))
        for b in res.summary.budgets:
            value = mean_of(b.device.of(task))
            if teacher and value is not None:
                ours.append((value / teacher, task, b.budget))
    if not ours:
        return []
    paper = [s / t for s, t in PAPER_1PCT_STUDENT_TEACHER.values()]
    median = statistics.median(paper)
    lo, hi = min(ours), max(ours)
    budgets = sorted({b for _, _, b in ours}, key=budget_bytes)
    at_least = sum(1 for r, _, _ in ours if r >= median)
    smallest = [
        min((row for row in ours if row[1] == task), key=lambda row: budget_bytes(row[2]))
        for task in dict.fromkeys(t for _, t, _ in ours)
    ]
    small = ", ".join(f"{t} {100 * r:.0f} % at {b}" for r, t, b in smallest)
    return [
        f"- **Against the paper:** at 1 % of ImageNet-21K ({PAPER_1PCT_KIB[0]}-"
        f"{PAPER_1PCT_KIB[1]} KiB payloads) the paper's students reach {100 * min(paper):.0f} to "
        f"{100 * max(paper):.0f} % of their teacher's accuracy (median {100 * median:.0f} %, "
        f"its ten datasets); here `--auto` devices reach {100 * lo[0]:.0f} % ({lo[1]} "
        f"{lo[2]}) to {100 * hi[0]:.0f} % ({hi[1]} {hi[2]}) of the teacher with payloads of "
        f"{budgets[0]} to {budgets[-1]}, at or above the paper's median in {at_least} of "
        f"{len(ours)} task/budget cases (smallest budget: {small}). Only the ratio is "
        "comparable: our teacher is a linear probe on frozen features (easier to match than "
        "the paper's fine-tuned ConvNeXt-V2), our student a head on the device's own encoder, "
        f"our corpus {acc.corpus.size:,} images against 14.2 million, and the tasks "
        "differ. The bytes differ by two orders of magnitude because the kept counts do: a "
        "few KiB keeps hundreds to thousands of images, 1 % of ImageNet-21K is 142,000."
    ]


def _strategy_line(acc: AccuracyResults) -> list[str]:
    bits = []
    for task, res in acc.tasks.items():
        ratios = sorted({r.ratio for r in res.summary.ratios})
        winners = []
        for keep_ratio in ratios:
            cells = [r for r in res.summary.ratios if r.ratio == keep_ratio]
            best = max(cells, key=lambda r: mean_of(r.device.of(task)) or -1.0)
            winners.append(best.setting)
        counts = {w: winners.count(w) for w in winners}
        bits.append(
            f"{task}: "
            + ", ".join(f"`{w}` best at {n} of {len(ratios)} ratios" for w, n in counts.items())
        )
    return [
        "- **No strategy wins everywhere** (by test accuracy, in hindsight): "
        + "; ".join(bits)
        + ". `--auto` chooses on k-fold splits of the train split, never the test split."
    ]
