"""Markdown and plots from the benchmark results: bench/results/summary.md, the README's Results
section and the PNGs. Pure functions of the results dict (every number comes from the JSON files
the benchmark modules wrote); the renderer is tested on a tiny fake results dict."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"
BALANCED_TASKS = frozenset({"clipart"})  # imbalanced classes: read balanced accuracy

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


def metric_of(task: str) -> str:
    return "balanced_accuracy" if task in BALANCED_TASKS else "accuracy"


def metric_name(task: str) -> str:
    return "balanced accuracy" if task in BALANCED_TASKS else "accuracy"


def pct(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * float(x):.1f}"


def pm(stat: Any) -> str:
    """`81.3 ± 0.4` from {"mean", "sd"} (fractions), `81.3` for one seed."""
    if not isinstance(stat, Mapping) or stat.get("mean") is None:
        return pct(stat) if isinstance(stat, int | float) else "n/a"
    if stat.get("n", 1) and stat.get("n", 1) > 1:
        return f"{pct(stat['mean'])} ± {100 * float(stat['sd']):.1f}"
    return pct(stat["mean"])


def mean_of(stat: Any) -> float | None:
    if isinstance(stat, Mapping):
        value = stat.get("mean")
        return None if value is None else float(value)
    if isinstance(stat, int | float):
        return float(stat)
    return None


def num(x: Any, digits: int = 0) -> str:
    value = mean_of(x)
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _ok(section: Any) -> bool:
    return isinstance(section, Mapping | list) and not (
        isinstance(section, Mapping) and "error" in section
    )


def _error_line(name: str, section: Any) -> list[str]:
    if section is None:
        return [f"_{name}: not run in this configuration._", ""]
    return [f"_{name} failed: `{section.get('error')}`_", ""]


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


# --------------------------------------------------------------------------------- sections


def header_lines(meta: Mapping[str, Any]) -> list[str]:
    m = meta.get("machine", {})
    lines = [
        "Measured by `make bench` (`python -m bench.run`)"
        + (f" at commit `{meta['git_commit']}`" if meta.get("git_commit") else "")
        + f" on {meta.get('date', '?')}: {m.get('cpu_model', '?')}, {m.get('nproc', '?')} cores "
        f"(1-min load average {m.get('loadavg_start', '?')} at the start), "
        f"{m.get('ram_gib', '?')} GiB RAM, Python {m.get('python', '?')}. "
        f"Total run time **{duration(float(meta.get('total_seconds', 0)))}**"
        + (
            " (" + ", ".join(f"{k} {duration(v)}" for k, v in meta.get("timings", {}).items()) + ")"
            if meta.get("timings")
            else ""
        )
        + "."
        + (
            f" The modules ran in {meta['invocations']} invocations of `bench.run` (some side by "
            "side on the 2 cores); the run time is the sum of the modules' times."
            if int(meta.get("invocations", 1)) > 1
            else ""
        ),
        "",
        f"Data: `{meta.get('data', '?')}` ({meta.get('corpus_size', '?')} reference images). "
        f"Seeds: {', '.join(map(str, meta.get('seeds', [])))}. Teacher encoder "
        f"`{meta.get('teacher_encoder', '?')}`, default device class encoder "
        f"`{meta.get('device', '?')}` (every encoder runs as its ONNX export, as on devices and in "
        "`make builder`).",
        "",
    ]
    for note in meta.get("reduced", []):
        lines.append(f"- **Reduced:** {note}")
    if meta.get("reduced"):
        lines.append("")
    return lines


def accuracy_lines(acc: Any, plots: Mapping[str, str]) -> list[str]:
    lines = ["### Accuracy per byte", ""]
    if not _ok(acc):
        return lines + _error_line("accuracy", acc)
    lines += [
        f"Device class `{acc['device']}` (its own encoder's features, the agent's head trainer), "
        f"teacher `{acc['teacher_encoder']}` for the strategy sweeps; `--auto` is the builder's "
        "default, one build per teacher encoder keeping the better-validating one (its choice "
        f"is shown as setting / teacher), corpus of {acc['corpus']['size']:,} images (1 % = "
        f"{round(acc['corpus']['size'] / 100):,} images). Mean ± sample standard deviation over "
        f"seeds {', '.join(map(str, acc['seeds']))}. Bytes are whole signed payloads. The "
        "device-oracle is the same device head trained on the whole labelled train split.",
        "",
    ]
    if "accuracy" in plots:
        lines += [f"![accuracy per byte]({plots['accuracy']})", ""]
    for task, res in acc["tasks"].items():
        s = res["summary"]
        metric = metric_of(task)
        oracle_key = (
            "oracle_balanced_accuracy" if metric == "balanced_accuracy" else "oracle_accuracy"
        )
        teacher_key = (
            "teacher_balanced_accuracy" if metric == "balanced_accuracy" else "teacher_accuracy"
        )
        lines += [
            f"**{task}** ({metric_name(task)}; {res['train_images']} train / "
            f"{res['test_images']} test images, {res['num_classes']} classes): teacher "
            f"{pct(s[teacher_key])}, device-oracle {pm(s[oracle_key])}.",
            "",
        ]
        rows = []
        for b in s["budgets"]:
            cap = b["settings_at_cap"]
            best: tuple[Any, Any] = max(
                cap.items(), key=lambda kv: mean_of(kv[1][metric]) or -1.0, default=(None, None)
            )
            random = cap.get("random")
            oracle = mean_of(s[oracle_key])
            value = mean_of(b[metric])
            rows.append(
                [
                    b["budget"],
                    ", ".join(f"`{c}`" for c in b["auto_choices"]),
                    num(b["keep"]),
                    num(b["payload_bytes"]),
                    pm(b[metric]),
                    f"{100 * value / oracle:.0f} %" if value is not None and oracle else "n/a",
                    f"`{best[0]}` {pm(best[1][metric])}" if best[0] else "n/a",
                    pm(random[metric]) if random else "n/a",
                ]
            )
        lines += _table(
            [
                "budget",
                "--auto chose (per seed: setting / teacher)",
                "keep",
                "bytes",
                "--auto",
                "/ oracle",
                "best setting at the cap (test, hindsight)",
                "random at the cap",
            ],
            rows,
        )
        ratios = sorted({r["ratio"] for r in s["ratios"]})
        settings = list(dict.fromkeys(r["setting"] for r in s["ratios"]))
        header = ["setting", *[f"{100 * r:g} %" for r in ratios]]
        table_rows = []
        for setting in settings:
            row = [f"`{setting}`"]
            for ratio in ratios:
                cell = [r for r in s["ratios"] if r["setting"] == setting and r["ratio"] == ratio]
                row.append(
                    f"{pm(cell[0][metric])} ({num(cell[0]['payload_bytes'])} B)" if cell else ""
                )
            table_rows.append(row)
        keeps = {r["ratio"]: r["keep"] for r in s["ratios"]}
        table_rows.append(["keep (images)", *[f"{keeps[r]:,}" for r in ratios]])
        lines += _table(header, table_rows)
    return lines


def hetero_lines(het: Any, plots: Mapping[str, str]) -> list[str]:
    lines = ["### Heterogeneous devices: one payload, different encoders", ""]
    if not _ok(het):
        return lines + _error_line("hetero", het)
    lines += [
        f"The `--auto` payloads chosen for `{het['payloads_chosen_for']}` (teachers "
        + ", ".join(f"`{t}`" for t in het.get("teacher_encoders", [het["teacher_encoder"]]))
        + ", the better-validating one per build, as in the accuracy table), applied unchanged "
        "on each device class with its own "
        "encoder; "
        "each compared with its own device-oracle (same encoder, head trained on the labelled "
        "train split)."
        + (
            f" Test splits over {het['max_test_images']:,} images are evaluated on a seeded "
            "class-stratified subset of that size, the same for every class and its oracle."
            if het.get("max_test_images")
            else ""
        )
        + "".join(
            f" `{spec}` runs at {', '.join(limit)} only (embedding cost)."
            for spec, limit in het.get("budget_limits", {}).items()
            if list(limit) != list(het.get("budgets", limit))
        ),
        "",
    ]
    if "hetero" in plots:
        lines += [f"![heterogeneous devices]({plots['hetero']})", ""]
    rows = []
    unavailable: dict[str, str] = {}
    for task, res in het["tasks"].items():
        metric = metric_of(task)
        oracle = "oracle_balanced_accuracy" if metric == "balanced_accuracy" else "oracle_accuracy"
        rel = (
            "balanced_relative_to_oracle" if metric == "balanced_accuracy" else "relative_to_oracle"
        )
        unavailable.update(res.get("unavailable", {}))
        for r in res["summary"]:
            rows.append(
                [
                    task,
                    r["budget"],
                    r["device_class"],
                    f"`{r['encoder']}`",
                    pm(r[metric]),
                    pm(r[oracle]),
                    _ratio(mean_of(r[rel])),
                ]
            )
    lines += _table(
        ["task", "budget", "device class", "encoder", "device", "own oracle", "device / oracle"],
        rows,
    )
    for spec, why in unavailable.items():
        lines.append(f"- `{spec}` not measured: {why}")
    if unavailable:
        lines.append("")
    return lines


def alternatives_lines(alt: Any, plots: Mapping[str, str]) -> list[str]:
    lines = ["### The alternatives at equal bytes", ""]
    if not _ok(alt):
        return lines + _error_line("alternatives", alt)
    lines += [
        "PLADA `--auto` and random reference selection (teacher labels) are signed payloads at or "
        "under the budget. Real images: a class-balanced sample of the train split at most the "
        f"device's input size ({', '.join(alt['formats'])}, Zstd-19, a few header bytes per image, "
        "no signature), the format that fits the most images; the device head trained on them. "
        "Weights: the teacher's head over corpus-standardised features (the device computes the "
        "corpus statistics itself), int8/int4 + Zstd-19, "
        "**valid only on a device running exactly the teacher's encoder** "
        f"(`{alt['teacher_encoder']}`); the device-class head likewise only for devices of "
        f"exactly `{alt['device']}`.",
        "",
    ]
    if "alternatives" in plots:
        lines += [f"![alternatives at equal bytes]({plots['alternatives']})", ""]
    rows = []
    for task, res in alt["tasks"].items():
        metric = metric_of(task)
        for b in res["summary"]["budgets"]:
            plada = b["plada_auto_balanced"] if metric == "balanced_accuracy" else b["plada_auto"]
            rnd = (
                b["random_reference_balanced"]
                if metric == "balanced_accuracy"
                else b["random_reference"]
            )
            images = (
                b["images_balanced_accuracy"]
                if metric == "balanced_accuracy"
                else b["images_accuracy"]
            )
            rows.append(
                [
                    task,
                    b["budget"],
                    pm(plada),
                    pm(rnd),
                    f"{pm(images)} ({num(b['images_count'])} img, "
                    f"{'/'.join(b['images_best_format'])})",
                    ", ".join(b["teacher_head_fits"]) or "none",
                ]
            )
    lines += _table(
        [
            "task",
            "budget",
            "PLADA --auto",
            "random reference",
            "real images (count, format)",
            "teacher head fits (exact encoder only)",
        ],
        rows,
    )
    rows = []
    for task, res in alt["tasks"].items():
        metric = metric_of(task)
        for head in ("teacher_head", "device_head"):
            h = res["weights"][head]
            for r in h["rows"]:
                rows.append(
                    [
                        task,
                        f"`{h['encoder']}` {r['precision']} ({r.get('scheme', '')})",
                        f"{r['bytes']:,}",
                        pct(r[metric]),
                        h["valid_for"],
                    ]
                )
    lines += _table(
        ["task", "head weights", "bytes", "accuracy (clipart: balanced)", "valid for"], rows
    )
    rows = []
    for task, res in alt["tasks"].items():
        metric = metric_of(task)
        fl = res["summary"]["fl"]
        rows.append(
            [
                task,
                f"{res['fl'][0]['devices']} x {res['fl'][0]['images_per_device']}",
                f"{fl['bytes_per_device']:,}",
                pm(fl[metric]),
            ]
        )
    lines += [
        "One federated-learning round of the same head (FedAvg of locally trained heads; the "
        "devices hold the labelled train split, IID): bytes down + up per device, fp32.",
        "",
    ]
    lines += _table(["task", "devices x images", "bytes per device", "accuracy"], rows)
    return lines


def codec_lines(codec: Any, acc: Any) -> list[str]:
    lines = ["### Codec", ""]
    if _ok(codec) and isinstance(codec, list):
        from bench.codec import render_table

        lines += [
            "Synthetic selections (bench/codec.py): selection bytes only (no envelope).",
            "",
            render_table(codec),
            "",
        ]
    else:
        lines += _error_line("bench.codec", codec)
    if not _ok(acc):
        return lines
    rows = []
    met = total = 0
    for task, res in acc["tasks"].items():
        for ratio in sorted({r["ratio"] for r in res["ratio_runs"]}):
            runs = [r for r in res["ratio_runs"] if r["ratio"] == ratio and "codec" in r]
            if not runs:
                continue
            savings = [1 - r["codec"]["best_bytes"] / r["codec"]["paper_bytes"] for r in runs]
            over = [r["codec"]["best_bytes"] / max(r["codec"]["bound_bytes"], 1) for r in runs]
            if ratio <= 0.02:
                met += sum(1 for x in savings if x >= 0.20)
                total += len(savings)
            paper = sorted(r["codec"]["paper_bytes"] for r in runs)
            best = sorted(r["codec"]["best_bytes"] for r in runs)
            rows.append(
                [
                    task,
                    f"{100 * ratio:g} %",
                    f"{runs[0]['keep']:,}",
                    f"{paper[len(paper) // 2]:,}",
                    f"{best[len(best) // 2]:,}",
                    f"{100 * min(savings):.0f} to {100 * max(savings):.0f} %",
                    f"{min(over):.2f} to {max(over):.2f}",
                ]
            )
    lines += [
        "Real selections (every setting of the accuracy table, first seed): selection bytes, "
        "median over settings.",
        "",
    ]
    lines += _table(
        [
            "task",
            "keep ratio",
            "keep",
            "paper codec",
            "best codec",
            "saving vs paper",
            "best / bound",
        ],
        rows,
    )
    if total:
        lines += [
            f"Target (ours >= 20 % smaller than the paper codec at keep <= 2 %): met by {met} of "
            f"{total} real selections.",
            "",
        ]
    return lines


def device_lines(dev: Any, corpus: Any, acc: Any) -> list[str]:
    lines = ["### Device cost", ""]
    if _ok(dev):
        enc = dev["encoder_images_per_second"]
        rows = []
        for name, value in enc.items():
            if name.endswith("_vs_torch") or not isinstance(value, int | float):
                continue
            ratio = enc.get(f"{name}_vs_torch")
            rows.append([name, f"{value:,.0f}", f"{ratio:.2f}x" if ratio else "1.00x (baseline)"])
        lines += [f"Encoder {dev['encoder']}, 2 threads, batch 32.", ""]
        lines += _table(["backend", "images/s", "vs torch eager"], rows)
        if dev.get("tflite") != "measured":
            lines += [f"- TFLite {dev.get('tflite')}", ""]
        apply = dev["apply_5000_warm_cache"]
        warm = apply.get("warm_cache", {})
        cache = dev["cache_corpus"]
        if warm:
            rate = warm["images"] / warm["seconds"] if warm.get("seconds") else float("nan")
            lines += [
                f"Feature cache built from cold for {cache['images']:,} images "
                f"({'ref-v1' if cache['is_ref_v1'] else 'the small corpus plus mirrored copies'}): "
                f"**{warm['seconds']:.0f} s** ({rate:,.0f} images/s).",
                "",
            ]
        rows = []
        for backend, r in apply.items():
            if backend == "warm_cache" or not isinstance(r, Mapping):
                continue
            rows.append(
                [
                    backend,
                    f"{r['kept_images']:,}",
                    f"{r['payload_to_model_seconds']:.2f}",
                    f"{r['train_seconds']:.2f}",
                    f"{r['peak_rss_mb']:.0f}",
                ]
            )
        lines += ["Payload to stored model, warm cache, the real `plada-agent apply` CLI:", ""]
        lines += _table(
            ["head backend", "kept images", "payload -> model s", "training s", "peak RSS MB"],
            rows,
        )
        fp16 = dev.get("float16_cache_cost", {})
        if fp16:
            lines += [
                "float16 feature cache, accuracy change vs float32: "
                + ", ".join(f"{t} {r['delta_points']:+.2f} points" for t, r in fp16.items())
                + ".",
                "",
            ]
    else:
        lines += _error_line("bench.device", dev)
    if _ok(acc):
        secs = [
            mean_of(b["seconds"])
            for res in acc["tasks"].values()
            for b in res["summary"]["budgets"]
        ]
        secs_known = [s for s in secs if s is not None]
        rss = [r["peak_rss_mb"] for res in acc["tasks"].values() for r in res["auto_runs"]]
        if secs_known:
            lines += [
                f"Builder, warm embedding cache: one `--auto` task (teacher, scores, candidates, "
                f"k-fold validation, signed payload, simulation) took {min(secs_known):.0f} to "
                f"{max(secs_known):.0f} s (mean per budget); peak RSS of the whole benchmark "
                f"process {max(rss):,.0f} MB.",
                "",
            ]
    if _ok(corpus):
        reads = corpus.get("random_reads", {})
        verify = corpus.get("verify", {})
        build = corpus.get("build", {})
        lines += [
            f"Corpus ({corpus['corpus']['num_images']:,} images, bench/corpus.py): "
            f"{num(reads.get('image_per_s'))} random image reads/s, verify "
            f"{num(verify.get('images_per_s'))} images/s, build {num(build.get('build_s'))} s.",
            "",
        ]
    elif corpus is not None:
        lines += _error_line("bench.corpus", corpus)
    return lines


def fleet_lines(fleet: Any) -> list[str]:
    lines = ["### Fleet", ""]
    if not _ok(fleet):
        return lines + _error_line("bench.fleet", fleet)
    lines += [
        f"One publish of the {fleet['payload']} to N agent daemons on a local mosquitto (real MQTT "
        "link, signature check and decode; training replaced by an instant stand-in, see Device "
        "cost for it). Wire bytes per device = payload + the trial log's MQTT overhead estimate.",
        "",
    ]
    rows = [
        [
            str(r["agents"]),
            str(r["messages"]),
            f"{r['payload_bytes']:,}",
            f"{r['publish_acked_s']:.3f}",
            f"{r['ready_median_s']:.3f}",
            f"{r['all_ready_s']:.3f}",
            f"{r['results_seen_by_builder_s']:.2f}",
            f"{r['wire_bytes_per_device']['mean']:,.0f}",
        ]
        for r in fleet["runs"]
    ]
    table = _table(
        [
            "agents",
            "messages",
            "payload B",
            "publish acked s",
            "median ready s",
            "all ready s",
            "all results seen s",
            "wire B / device",
        ],
        rows,
    )
    return lines + table + _fleet_reading(fleet["runs"])


def _fleet_reading(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Why 'ready' grows with N here: the harness, not the broker (computed from the runs)."""
    if len(runs) < 2:
        return []
    small = min(runs, key=lambda r: r["agents"])
    large = max(runs, key=lambda r: r["agents"])
    acked = [r["publish_acked_s"] for r in runs]
    per_agent = (large["all_ready_s"] - small["all_ready_s"]) / max(
        large["agents"] - small["agents"], 1
    )
    return [
        f"The builder's cost does not grow with N: one publish, acknowledged in "
        f"{min(acked):.2f} to {max(acked):.2f} s and every device receives one message of the "
        f"same size. 'Ready' does grow, by about {per_agent:.2f} s per extra agent: the "
        "agents here are threads of one Python process on 2 cores, so their signature checks "
        "and payload decodes queue on one interpreter lock. On a real fleet each device "
        f"decodes on its own CPU, which the {small['agents']}-agent row measures: "
        f"{small['all_ready_s']:.2f} s from publish to ready.",
        "",
    ]


def _plada_at(alt_task: Mapping[str, Any], metric: str) -> dict[str, float]:
    """{budget: PLADA --auto mean} from an alternatives task summary."""
    key = "plada_auto_balanced" if metric == "balanced_accuracy" else "plada_auto"
    out = {}
    for b in alt_task["summary"]["budgets"]:
        value = mean_of(b[key])
        if value is not None:
            out[b["budget"]] = value
    return out


def _selection_line(alt: Mapping[str, Any]) -> list[str]:
    """PLADA's chosen selection vs random reference images with the same teacher's labels."""
    gaps: list[tuple[float, str]] = []
    for task, res in alt["tasks"].items():
        suffix = "_balanced" if metric_of(task) != "accuracy" else ""
        for b in res["summary"]["budgets"]:
            plada, rand = mean_of(b[f"plada_auto{suffix}"]), mean_of(b[f"random_reference{suffix}"])
            if plada is not None and rand is not None:
                gaps.append((100 * (plada - rand), f"{task} {b['budget']}"))
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


def _paper_line(acc: Mapping[str, Any]) -> list[str]:
    """Student as a fraction of its teacher: the one ratio that travels between the paper's
    setting and ours (corpus, tasks, teacher and student all differ)."""
    ours: list[tuple[float, str, str]] = []  # (student / teacher, task, budget)
    for task, res in acc["tasks"].items():
        metric = metric_of(task)
        teacher = mean_of(res["summary"][f"teacher_{metric}"])
        for b in res["summary"]["budgets"]:
            value = mean_of(b[metric])
            if teacher and value is not None:
                ours.append((value / teacher, task, b["budget"]))
    if not ours:
        return []
    paper = [s / t for s, t in PAPER_1PCT_STUDENT_TEACHER.values()]
    median = statistics.median(paper)
    lo, hi = min(ours), max(ours)
    budgets = sorted({b for _, _, b in ours}, key=_bytes_of)
    at_least = sum(1 for r, _, _ in ours if r >= median)
    smallest = [
        min((row for row in ours if row[1] == task), key=lambda row: _bytes_of(row[2]))
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
        f"our corpus {acc['corpus']['size']:,} images against 14.2 million, and the tasks "
        "differ. The bytes differ by two orders of magnitude because the kept counts do: a "
        "few KiB keeps hundreds to thousands of images, 1 % of ImageNet-21K is 142,000."
    ]


def reading_lines(results: Mapping[str, Any]) -> list[str]:
    """A short reading computed from the numbers (every figure here comes from the results)."""
    lines = ["### Reading", ""]
    alt: Any = results.get("alternatives")
    het: Any = results.get("hetero")
    acc: Any = results.get("accuracy")
    if _ok(alt):
        wins: list[str] = []
        losses: list[str] = []
        for task, res in alt["tasks"].items():
            metric = metric_of(task)
            plada_at = _plada_at(res, metric)
            for b in res["summary"]["budgets"]:
                images = mean_of(
                    b["images_balanced_accuracy" if metric != "accuracy" else "images_accuracy"]
                )
                plada = plada_at.get(b["budget"])
                if plada is None or images is None:
                    continue
                item = f"{task} {b['budget']} ({pct(images)} vs PLADA {pct(plada)})"
                (wins if plada > images else losses).append(item)
        lines.append(
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
        )
        lines += _selection_line(alt)
        heads = []
        for task, res in alt["tasks"].items():
            metric = metric_of(task)
            rows = {r["precision"]: r for r in res["weights"]["teacher_head"]["rows"]}
            if "int4" in rows and "fp32" in rows:
                change = 100 * (rows["int4"][metric] - rows["fp32"][metric])
                plada_at = _plada_at(res, metric)
                fits = [b for b, v in plada_at.items() if _bytes_of(b) >= rows["int4"]["bytes"]]
                heads.append(
                    f"{task}: {rows['int4']['bytes']:,} B, {pct(rows['int4'][metric])} "
                    f"({change:+.1f} points vs fp32)"
                    + (
                        f", PLADA at {fits[0]}: {pct(plada_at[fits[0]])}"
                        if fits
                        else ", larger than every budget measured"
                    )
                )
        if heads:
            lines.append(
                "- **Sending weights:** the teacher's int4 head is "
                + "; ".join(heads)
                + ". Where it fits, it carries the teacher itself, which a student trained on "
                "pseudo-labelled reference images only approaches: weights win **if** every "
                "device runs exactly the teacher's encoder. To any other encoder they are "
                "meaningless (another feature space), and that is the case PLADA is for."
            )
        fl = []
        for task, res in alt["tasks"].items():
            metric = metric_of(task)
            f = res["summary"]["fl"]
            fl.append(f"{task} {f['bytes_per_device']:,} B per device, {pm(f[metric])}")
        lines.append(
            "- **Federated learning:** one round of the same head costs "
            + "; ".join(fl)
            + " (down + up). It needs labelled data on every device and two transfers of a "
            "head per round; PLADA needs no labels on the device and one broadcast of a few KiB."
        )
    if _ok(het):
        rels = []
        for task, res in het["tasks"].items():
            for r in res["summary"]:
                key = (
                    "balanced_relative_to_oracle"
                    if task in BALANCED_TASKS
                    else "relative_to_oracle"
                )
                value = mean_of(r[key])
                if value is not None:
                    rels.append((value, f"{task} {r['budget']} on `{r['encoder']}`"))
        if rels:
            lo, hi = min(rels), max(rels)
            lines.append(
                f"- **Heterogeneous devices:** the same payload reaches {100 * lo[0]:.0f} % "
                f"({lo[1]}) to {100 * hi[0]:.0f} % ({hi[1]}) of each device class's own "
                "oracle, most of them encoders the builder's teacher never ran: labels on shared "
                "images travel across encoders, weights do not."
            )
    if _ok(acc):
        lines += _paper_line(acc)
        bits = []
        for task, res in acc["tasks"].items():
            metric = metric_of(task)
            s = res["summary"]
            ratios = sorted({r["ratio"] for r in s["ratios"]})
            winners = []
            for ratio in ratios:
                cells = [r for r in s["ratios"] if r["ratio"] == ratio]
                best = max(cells, key=lambda r: mean_of(r[metric]) or -1.0)
                winners.append(best["setting"])
            counts = {w: winners.count(w) for w in winners}
            bits.append(
                f"{task}: "
                + ", ".join(f"`{w}` best at {n} of {len(ratios)} ratios" for w, n in counts.items())
            )
        lines.append(
            "- **No strategy wins everywhere** (by test accuracy, in hindsight): "
            + "; ".join(bits)
            + ". `--auto` chooses on k-fold splits of the train split, never the test split."
        )
    lines.append("")
    return lines


def _bytes_of(budget: str) -> int:
    units = {"KiB": 1024, "MiB": 1024**2, "B": 1}
    for unit, factor in units.items():
        if budget.endswith(unit):
            return int(float(budget[: -len(unit)]) * factor)
    return 0


def render_markdown(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    meta = results.get("meta", {})
    lines: list[str] = []
    lines += header_lines(meta)
    lines += reading_lines(results)
    lines += accuracy_lines(results.get("accuracy"), plots)
    lines += hetero_lines(results.get("hetero"), plots)
    lines += alternatives_lines(results.get("alternatives"), plots)
    lines += codec_lines(results.get("codec"), results.get("accuracy"))
    lines += device_lines(results.get("device"), results.get("corpus"), results.get("accuracy"))
    lines += fleet_lines(results.get("fleet"))
    return "\n".join(lines).rstrip() + "\n"


def replace_between_markers(text: str, body: str) -> str:
    """`text` with everything between the results markers replaced by `body`."""
    if README_START not in text or README_END not in text:
        raise ValueError(f"README has no {README_START} ... {README_END} markers")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{body.rstrip()}\n{README_END}{tail}"


# --------------------------------------------------------------------------------- plots


def make_plots(results: Mapping[str, Any], out_dir: Path) -> dict[str, Path]:
    """PNG plots (matplotlib Agg) of whichever sections exist; {name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    acc: Any = results.get("accuracy")
    if _ok(acc) and acc["tasks"]:
        tasks = list(acc["tasks"])
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
        for ax, task in zip(axes[0], tasks, strict=True):
            s = acc["tasks"][task]["summary"]
            metric = metric_of(task)
            for setting in dict.fromkeys(r["setting"] for r in s["ratios"]):
                rows = sorted(
                    (r for r in s["ratios"] if r["setting"] == setting), key=lambda r: r["ratio"]
                )
                ax.plot(
                    [mean_of(r["payload_bytes"]) for r in rows],
                    [100 * (mean_of(r[metric]) or 0) for r in rows],
                    marker=".",
                    linewidth=1,
                    label=setting,
                )
            budgets = s["budgets"]
            if budgets:
                ax.errorbar(
                    [mean_of(b["payload_bytes"]) for b in budgets],
                    [100 * (mean_of(b[metric]) or 0) for b in budgets],
                    yerr=[100 * float(b[metric]["sd"] or 0) for b in budgets],
                    fmt="k*",
                    markersize=10,
                    label="--auto (byte budgets)",
                )
            teacher = s["teacher_balanced_accuracy" if metric != "accuracy" else "teacher_accuracy"]
            oracle = mean_of(
                s["oracle_balanced_accuracy" if metric != "accuracy" else "oracle_accuracy"]
            )
            ax.axhline(100 * teacher, color="grey", linestyle="--", label="teacher")
            if oracle is not None:
                ax.axhline(100 * oracle, color="black", linestyle=":", label="device-oracle")
            ax.set_xscale("log")
            ax.set_xlabel("signed payload bytes")
            ax.set_ylabel(f"device {metric_name(task)} (%)")
            ax.set_title(task)
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        paths["accuracy"] = out_dir / "accuracy_per_byte.png"
        fig.savefig(paths["accuracy"], dpi=110)
        plt.close(fig)
    alt: Any = results.get("alternatives")
    if _ok(alt) and alt["tasks"]:
        tasks = list(alt["tasks"])
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.5), squeeze=False)
        for ax, task in zip(axes[0], tasks, strict=True):
            res = alt["tasks"][task]
            bal = metric_of(task) != "accuracy"
            budgets = res["summary"]["budgets"]
            xs = [b["budget_bytes"] for b in budgets]
            for key, label in (
                ("plada_auto", "PLADA --auto"),
                ("random_reference", "random reference"),
                ("images_accuracy", "real images (best format)"),
            ):
                k = key + "_balanced" if bal and key != "images_accuracy" else key
                if key == "images_accuracy" and bal:
                    k = "images_balanced_accuracy"
                ys = [mean_of(b[k]) for b in budgets]
                ax.plot(
                    xs,
                    [100 * y if y is not None else math.nan for y in ys],
                    marker="o",
                    label=label,
                )
            metric = metric_of(task)
            for head, marker, color in (
                ("teacher_head", "s", "black"),
                ("device_head", "^", "grey"),
            ):
                for r in res["weights"][head]["rows"]:
                    if r["precision"] == "fp32":
                        continue
                    ax.scatter(
                        [r["bytes"]],
                        [100 * r[metric]],
                        marker=marker,
                        edgecolors=color,
                        facecolors="none" if r["precision"] == "int4" else color,
                        label=f"{res['weights'][head]['encoder']} head {r['precision']} "
                        "(exact encoder only)",
                    )
            fl = res["summary"]["fl"]
            ax.scatter(
                [fl["bytes_per_device"]],
                [100 * (mean_of(fl[metric]) or 0)],
                marker="x",
                color="red",
                label="1 FL round",
            )
            ax.set_xscale("log")
            ax.set_xlabel("bytes per device")
            ax.set_ylabel(f"{metric_name(task)} (%)")
            ax.set_title(task)
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        paths["alternatives"] = out_dir / "alternatives.png"
        fig.savefig(paths["alternatives"], dpi=110)
        plt.close(fig)
    het: Any = results.get("hetero")
    if _ok(het) and het["tasks"]:
        rows = [
            (task, r)
            for task, res in het["tasks"].items()
            for r in res["summary"]
            if r["budget"] == res["summary"][0]["budget"]  # the budget every class runs
        ]
        if rows:
            fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows)), 4.5))
            labels = [f"{t}\n{r['encoder']}" for t, r in rows]
            xs = list(range(len(rows)))
            dev = [100 * (mean_of(r[metric_of(t)]) or 0) for t, r in rows]
            orc = [
                100
                * (
                    mean_of(
                        r[
                            "oracle_balanced_accuracy"
                            if metric_of(t) != "accuracy"
                            else "oracle_accuracy"
                        ]
                    )
                    or 0
                )
                for t, r in rows
            ]
            ax.bar([x - 0.2 for x in xs], dev, width=0.4, label="PLADA payload")
            ax.bar([x + 0.2 for x in xs], orc, width=0.4, label="own device-oracle")
            ax.set_xticks(xs)
            ax.set_xticklabels(labels, fontsize=7, rotation=45, ha="right")
            ax.set_ylabel("accuracy (%) (clipart: balanced)")
            ax.set_title(
                f"one payload ({rows[0][1]['budget']}), device classes with their own encoders"
            )
            ax.legend(fontsize=8)
            fig.tight_layout()
            paths["hetero"] = out_dir / "hetero.png"
            fig.savefig(paths["hetero"], dpi=110)
            plt.close(fig)
    return paths
