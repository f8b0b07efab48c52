"""Predict latency with several installed tasks -> bench/results/multitask.json.

    .venv/bin/python -m bench.multitask --data data

One device encoder (lite0-64 int8, the device benchmark's export, 2 threads, batch 32) and k = 1,
2 and 5 installed heads in a real model store (agent.models), run through agent.predict.Predictor
on corpus images:

- `ms_per_image`: `predict_tasks` (one encoder pass per image, then every head, then each head's
  top-k as Python lists), end to end;
- `encoder_ms_per_image` / `heads_ms_per_image`: the encoder pass, and the k heads' ONNX runs on
  its features, timed apart (the rest of `ms_per_image` is the top-k lists);
- `separate_passes_ms_per_image`: what k one-task predictors (one encoder pass per task) cost.

Heads are real ONNX heads of the store (`softmax(((f - mean) * scale) W + b)`) with random
weights: their cost depends on the feature dimension and the number of classes, not on what they
learned. Each figure is the best of several repeats, taken round-robin over the task counts
(other work on a shared machine only slows a run down, and so it cannot favour one count).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import ROOT, BenchContext, log, write_json

TASK_COUNTS = (1, 2, 5)
_CLASSES = (10, 2, 6, 4, 8)  # the five heads' class counts


def _elapsed_s(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _one_pass_each(predictors: list[Any], batch: list[Any]) -> list[Any]:
    """What k one-task devices would do: an encoder pass per task."""
    return [p.predict_proba(batch) for p in predictors]


def _store_heads(state: Path, feature_dim: int, encoder: Any) -> list[Any]:
    """Five heads of different tasks in a real model store; returns the stored entries."""
    from agent.models import ModelMeta, ModelStore
    from plada.head import HeadWeights

    shutil.rmtree(state, ignore_errors=True)
    store = ModelStore(state)
    rng = np.random.default_rng(0)
    for i, classes in enumerate(_CLASSES):
        weights = HeadWeights(
            weight=rng.normal(size=(feature_dim, classes)).astype(np.float32),
            bias=rng.normal(size=classes).astype(np.float32),
            mean=rng.normal(size=feature_dim).astype(np.float32),
            scale=np.ones(feature_dim, np.float32),
        )
        meta = ModelMeta(
            task=f"task{i + 1}",
            version=1,
            class_names=tuple(f"c{c}" for c in range(classes)),
            payload_digest=f"{i + 1:064x}",
            created_at=time.time(),
            train_seconds=0.0,
            train_accuracy=0.0,
            backend="bench",
            hyper_params={},
            encoder_id=encoder.info.id,
            encoder_sha256=encoder.info.sha256,
            feature_dim=feature_dim,
            num_examples=0,
            final_loss=0.0,
        )
        store.save(weights, meta)
    return store.installed()


def measure(
    encoder_path: Path, corpus_dir: Path, work: Path, *, images: int, repeats: int
) -> dict[str, Any]:
    from agent.features import load_extractor
    from agent.predict import Predictor
    from plada.corpus import Corpus

    corpus = Corpus.open(corpus_dir)
    batch = corpus.images(list(range(min(images, len(corpus)))))
    extractor = load_extractor(encoder_path, backend="onnxruntime", threads=2)
    models = _store_heads(work / "state", extractor.info.feature_dim, extractor)
    n = len(batch)
    calls: dict[int, dict[str, Callable[[], object]]] = {}
    for k in TASK_COUNTS:
        shared = Predictor(extractor, models[:k], batch_size=32)
        singles = [Predictor(extractor, m, batch_size=32) for m in models[:k]]
        features = shared.features(batch)  # (n, D)
        calls[k] = {
            "ms_per_image": partial(shared.predict_tasks, batch),
            "encoder_ms_per_image": partial(shared.features, batch),
            "heads_ms_per_image": partial(shared.proba_by_task, features),
            "separate_passes_ms_per_image": partial(_one_pass_each, singles, batch),
        }
    # Round-robin over every (k, measure) pair, best of `repeats`: load from other work on a
    # shared machine comes and goes, and this way it cannot favour one task count.
    best = {(k, m): float("inf") for k, measures in calls.items() for m in measures}
    for call in (c for measures in calls.values() for c in measures.values()):
        call()  # warm-up: sessions, allocations
    for _ in range(repeats):
        for k, measures in calls.items():
            for name, call in measures.items():
                best[k, name] = min(best[k, name], _elapsed_s(call))
    rows = []
    for k in TASK_COUNTS:
        row: dict[str, Any] = {"tasks": k}
        for name in calls[k]:
            digits = 4 if name == "heads_ms_per_image" else 3
            row[name] = round(1000 * best[k, name] / n, digits)
        rows.append(row)
        log(f"multitask: {k} task(s): {row['ms_per_image']:.2f} ms/image")
    one, five = rows[0], rows[-1]
    return {
        "encoder": encoder_path.stem,
        "feature_dim": extractor.info.feature_dim,
        "threads": 2,
        "batch_size": 32,
        "images": n,
        "repeats": repeats,
        "head_classes": list(_CLASSES),
        "rows": rows,
        "extra_task_ms_per_image": _per_extra(one, five, "ms_per_image"),
        "extra_head_ms_per_image": _per_extra(one, five, "heads_ms_per_image"),
        "extra_separate_ms_per_image": _per_extra(one, five, "separate_passes_ms_per_image"),
    }


def _per_extra(one: dict[str, Any], five: dict[str, Any], key: str) -> float:
    """What each task beyond the first adds, per image (slope from 1 to 5 tasks)."""
    extra: float = (five[key] - one[key]) / (five["tasks"] - one["tasks"])
    return round(extra, 4)


def run(ctx: BenchContext) -> dict[str, Any]:
    from bench import agent as agent_bench

    work = (ctx.work / "multitask").resolve()
    ref = (ctx.data / "ref-v1").resolve()
    enc_dir = (ctx.work / "device" / "encoders").resolve()  # the device benchmark's export
    encoder = agent_bench._export(enc_dir, int8=True, corpus=ref)
    result = measure(
        encoder,
        ref,
        work,
        images=64 if ctx.quick else 256,
        repeats=2 if ctx.quick else 9,
    )
    write_json(ctx.out / "multitask.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--quick", action="store_true", help="fewer images and repeats")
    args = parser.parse_args(argv)
    ctx = BenchContext(data=args.data, out=args.out, work=args.work, quick=args.quick)
    run(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
