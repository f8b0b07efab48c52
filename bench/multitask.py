"""Predict latency with several installed tasks -> bench/results/multitask.json.

    .venv/bin/python -m bench.multitask --data data

One device encoder (lite0-64 int8, the device benchmark's export, 2 threads, batch 32) and k = 1,
2 and 5 installed heads in a real model store (agent.models), run through agent.predict.Predictor
on corpus images:

- `ms_per_image`: `predict_tasks` (one encoder pass per image, then every head), end to end;
- `encoder_ms_per_image` / `heads_ms_per_image`: the same call's two parts timed apart;
- `separate_passes_ms_per_image`: what k one-task predictors (one encoder pass per task) cost.

Heads are real ONNX heads of the store (`softmax(((f - mean) * scale) W + b)`) with random
weights: their cost depends on the feature dimension and the number of classes, not on what they
learned. Each figure is the best of a few repeats (other work on a shared machine only slows a
run down).
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


def _best_s(call: Callable[[], object], repeats: int) -> float:
    call()  # warm-up: sessions, allocations
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


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
    rows = []
    for k in TASK_COUNTS:
        chosen = models[:k]
        shared = Predictor(extractor, chosen, batch_size=32)
        singles = [Predictor(extractor, m, batch_size=32) for m in chosen]
        features = shared.features(batch)  # (n, D)
        total = _best_s(partial(shared.predict_tasks, batch), repeats)
        encoder_s = _best_s(partial(shared.features, batch), repeats)
        heads_s = _best_s(partial(shared.proba_by_task, features), repeats)
        separate = _best_s(partial(_one_pass_each, singles, batch), repeats)
        rows.append(
            {
                "tasks": k,
                "ms_per_image": round(1000 * total / n, 3),
                "encoder_ms_per_image": round(1000 * encoder_s / n, 3),
                "heads_ms_per_image": round(1000 * heads_s / n, 4),
                "separate_passes_ms_per_image": round(1000 * separate / n, 3),
            }
        )
        log(f"multitask: {k} task(s): {rows[-1]['ms_per_image']:.2f} ms/image")
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
        "extra_task_ms_per_image": round(
            (five["ms_per_image"] - one["ms_per_image"]) / (five["tasks"] - one["tasks"]), 4
        ),
        "extra_head_ms_per_image": round(
            (five["heads_ms_per_image"] - one["heads_ms_per_image"])
            / (five["tasks"] - one["tasks"]),
            4,
        ),
    }


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
        repeats=2 if ctx.quick else 5,
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
