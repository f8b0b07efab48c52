"""Teacher candidates (issue 16 item 3) on the real targets: each searched candidate's k-fold
score and test accuracy beside every Lite device class's oracle, and the default device's
simulated accuracy at 2 and 8 KiB with the plain teachers (before) and with the search (after).

    nice -n 10 .venv/bin/python -m bench.teacher [--tasks fashion,clipart] [--budgets 2KiB,8KiB]
        [--skip-builds]

Writes bench/results/teacher.json. Views are off in the builds so the difference is the
teacher's alone (the search runs on the no-view option only)."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import ENCODER_BACKEND, RESULTS, ROOT, log, write_json
from builder.features.sources import EncoderFeatures, TaskFeatures
from builder.pipeline.budget import parse_budget
from builder.pipeline.build import build_task_multi, single_blas
from builder.pipeline.config import TaskConfig
from builder.pipeline.simulate import device_oracle
from builder.pipeline.targets import load_target, read_images
from builder.pipeline.teachers.choose import ChoiceConfig
from builder.pipeline.teachers.stage import candidate_test_accuracies, search_stage
from plada.corpus import Corpus
from plada.signing import generate_keypair, load_private_key

TEACHERS = ("lite1-96", "lite0-64-int8")
DEVICES = ("lite0-64-int8", "lite1-96-int8", "lite1-96", "lite1-128")


def _source(spec: str, sources: dict[str, EncoderFeatures]) -> EncoderFeatures:
    if spec not in sources:
        sources[spec] = EncoderFeatures(
            spec, cache_root=ROOT / "data/cache/embeddings", progress=False, backend=ENCODER_BACKEND
        )
    return sources[spec]


def teacher_rows(
    task_dir: Path,
    sources: dict[str, EncoderFeatures],
    *,
    devices: tuple[str, ...] = DEVICES,
    teacher_specs: tuple[str, ...] = TEACHERS,
    test_sample: int = 0,
) -> dict[str, Any]:
    """Candidates and oracles from the target's own images (no corpus needed); test_sample > 0
    scores on that many test images (drawn at random, seed 0) when the whole split is too slow to
    embed on a loaded machine."""
    task = load_target(task_dir)
    if test_sample:
        rng = np.random.default_rng(0)
        keep = np.sort(rng.permutation(len(task.test))[:test_sample])
        task = replace(task, test=replace(task.test, paths=tuple(task.test.paths[i] for i in keep),
                                           labels=task.test.labels[keep]))  # fmt: skip
    train_images, test_images = read_images(task.train.paths), read_images(task.test.paths)
    teachers = []
    for spec in teacher_specs:
        src = _source(spec, sources)
        train = src.image_features(train_images)
        teachers.append(
            TaskFeatures(spec, np.empty((0, train.shape[1]), np.float32), train,
                         src.image_features(test_images))
        )  # fmt: skip
    start = time.perf_counter()
    with single_blas():
        searched = search_stage(
            [_source(s, sources) for s in teacher_specs], teachers, train_images, task.train.labels,
            num_classes=task.num_classes, augment=True, config=ChoiceConfig(),
        )  # fmt: skip
    search_s = time.perf_counter() - start
    with single_blas():
        tests = candidate_test_accuracies(searched, teachers, task.test.labels)
    encoders = searched.search.data.encoders
    candidates: list[dict[str, Any]] = [
        {
            "name": s.spec.name(encoders), "kind": s.spec.kind, "augment": s.spec.augment,
            "hyper": s.spec.hyper(), "val_accuracy": s.mean, "val_std": s.std,
            "test_accuracy": t, "chosen": i == searched.search.chosen,
        }
        for i, (s, t) in enumerate(zip(searched.search.scored, tests, strict=True))
    ]  # fmt: skip
    oracles = {}
    for spec in devices:
        src = _source(spec, sources)
        oracles[spec] = device_oracle(
            src.image_features(train_images), task.train.labels,
            src.image_features(test_images), task.test.labels, num_classes=task.num_classes,
        ).accuracy  # fmt: skip
    chosen = tests[searched.search.chosen]
    return {
        "candidates": candidates,
        "oracles": oracles,
        "chosen_test_accuracy": chosen,
        "margin_over_best_oracle": chosen - max(oracles.values()),
        "search_s_warm_features": search_s,
        "test_images": len(task.test),
    }


def fine_tune_rows(task_dir: Path, spec: str = TEACHERS[0]) -> dict[str, Any]:
    """--fine-tune's teacher on the target splits (the corpus re-embedding timed on a sample and
    extrapolated: torch eager over 83,480 images is too slow for this shared machine)."""
    from builder.pipeline.teacher import fit_teacher
    from builder.pipeline.teachers.finetune import (
        FineTuneConfig,
        FineTunedFeatures,
        fine_tune_encoder,
    )

    task = load_target(task_dir)
    train_images, test_images = read_images(task.train.paths), read_images(task.test.paths)
    start = time.perf_counter()
    encoder = fine_tune_encoder(
        spec, train_images, task.train.labels, num_classes=task.num_classes,
        config=FineTuneConfig(),
    )  # fmt: skip
    tune_s = time.perf_counter() - start
    source = FineTunedFeatures(encoder)
    train = source.image_features(train_images)
    start = time.perf_counter()
    test = source.image_features(test_images)
    per_image_s = (time.perf_counter() - start) / len(test_images)
    teacher = fit_teacher(train, task.train.labels, num_classes=task.num_classes)
    corpus_size = len(Corpus.open(ROOT / "data/ref-v1"))
    return {
        "encoder": spec,
        "fine_tune_s": tune_s,
        "teacher_test_accuracy": float(np.mean(teacher.predict(test) == task.test.labels)),
        "embed_s_per_image": per_image_s,
        "corpus_embed_s_extrapolated": per_image_s * corpus_size,
    }


def builds(
    task_dir: Path, budget: str, key: Path, sources: dict[str, EncoderFeatures]
) -> dict[str, Any]:
    corpus = Corpus.open(ROOT / "data/ref-v1")
    task = load_target(task_dir)
    out: dict[str, Any] = {}
    for label, search in (("after", True), ("before", False)):
        if label == "before" and not out["after"]["searched_teacher_won"]:
            # the plain teachers' runs are the same with or without the search, so is the build
            out["before"] = {**out["after"], "same_as_after": True}
            break
        config = TaskConfig(budget=parse_budget(budget), seed=0, created_at=1_800_000_000,
                            views=False, teacher_search=search)  # fmt: skip
        start = time.perf_counter()
        result = build_task_multi(
            corpus, task, teacher_sources=[_source(s, sources) for s in TEACHERS],
            device_sources={"lite0-64-int8": _source("lite0-64-int8", sources)},
            signing_key=load_private_key(key), config=config,
        )  # fmt: skip
        report = result.record
        choice = report.teacher_choice or []
        out[label] = {
            "device_accuracy": report.device_accuracy,
            "device_balanced_accuracy": report.device_balanced_accuracy,
            "device_oracle_accuracy": report.device_oracle_accuracy,
            "relative_to_oracle": report.device_accuracy / report.device_oracle_accuracy,
            "teacher_accuracy": report.teacher_accuracy,
            "teacher_kind": report.teacher.kind if report.teacher else None,
            "teacher_encoder": report.teacher.encoder if report.teacher else None,
            "searched_teacher_won": len(choice) > len(TEACHERS) and choice[-1].chosen,
            "strategy": report.strategy,
            "keep": report.keep,
            "payload_bytes": report.payload_bytes,
            "teacher_choice": [c.model_dump() for c in choice],
            "teacher_search": report.teacher_search.model_dump() if report.teacher_search else None,
            "timings_s": report.timings_s,
            "wall_s": time.perf_counter() - start,
        }
        log(f"{task_dir.name} {budget} {label}: device {report.device_accuracy:.4f} "
            f"teacher {report.teacher_accuracy:.4f} ({out[label]['teacher_kind']})")  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", default="fashion,clipart,digits")
    parser.add_argument("--build-tasks", default="clipart,fashion")
    parser.add_argument("--budgets", default="2KiB,8KiB")
    parser.add_argument("--skip-builds", action="store_true")
    parser.add_argument("--devices", default=",".join(DEVICES), help="oracles of these classes")
    parser.add_argument(
        "--teachers", default=",".join(TEACHERS), help="teacher encoders the search concatenates"
    )
    parser.add_argument("--test-sample", type=int, default=0, help="score on N test images")
    parser.add_argument("--fine-tune-tasks", default="", help="tasks to measure --fine-tune on")
    parser.add_argument("--out", type=Path, default=RESULTS / "teacher.json")
    args = parser.parse_args()
    sources: dict[str, EncoderFeatures] = {}
    results: dict[str, Any] = {
        "teachers": {}, "builds": {}, "seed": 0, "views": False,
        "teacher_encoders": args.teachers.split(","),
    }  # fmt: skip
    for name in filter(None, args.tasks.split(",")):
        log(f"teacher candidates: {name}")
        results["teachers"][name] = teacher_rows(
            ROOT / "data/targets" / name, sources, devices=tuple(args.devices.split(",")),
            teacher_specs=tuple(args.teachers.split(",")), test_sample=args.test_sample,
        )  # fmt: skip
        write_json(args.out, results)
    for name in filter(None, args.fine_tune_tasks.split(",")):
        log(f"fine-tune: {name}")
        results.setdefault("fine_tune", {})[name] = fine_tune_rows(ROOT / "data/targets" / name)
        write_json(args.out, results)
    if not args.skip_builds:
        keys = ROOT / "build/bench-teacher-keys"
        if not (keys / "private.pem").exists():
            generate_keypair(keys)
        for name in args.build_tasks.split(","):
            for budget in args.budgets.split(","):
                results["builds"][f"{name}/{budget}"] = builds(
                    ROOT / "data/targets" / name, budget, keys / "private.pem", sources
                )
                write_json(args.out, results)
    results["load_average"] = list(__import__("os").getloadavg())
    write_json(args.out, results)


if __name__ == "__main__":
    main()
