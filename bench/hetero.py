"""Heterogeneous devices: one payload, device classes with different encoders
-> bench/results/hetero.json.

    .venv/bin/python -m bench.hetero --data data [--quick]   (after bench.accuracy)

The signed `--auto` payloads bench.accuracy wrote (chosen for the default device class) are
verified and decoded as an agent would, then applied on every device class: the kept reference
images are embedded with that class's own encoder, the agent's head is trained on them with the
payload's labels and tested on the target's test split embedded by the same encoder. Each class is
compared with its own device-oracle (its encoder, head trained on the whole labelled train split).
Test splits larger than MAX_TEST images are evaluated on a seeded class-stratified subset of
MAX_TEST (the same subset for every class and its oracle).
A class whose encoder cannot be loaded here is reported with the reason, not dropped silently.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import BenchContext, log, mean_spread, pick, write_json
from bench.accuracy import payload_path
from builder.pipeline.build import single_blas

# (device class, encoder spec): the firmware_configs classes plus the ResNet-50 of data.md.
DEVICE_CLASSES: tuple[tuple[str, str], ...] = (
    ("raspberry-pi-4", "lite0-64-int8"),
    ("raspberry-pi-5", "lite1-96-int8"),
    ("x86-dev", "lite1-96"),
    ("jetson-orin-nano", "lite1-128"),
    ("resnet50-opennsfw", "opennsfw-224"),
)
BUDGETS = ("2KiB", "8KiB")
# Budgets an encoder is limited to: the ResNet-50 embeds 10-40 images/s at 224 px on 2 cores, and
# the 8 KiB payloads keep 7,500-12,000 images each (about 80,000 embeddings over 3 tasks x 3
# seeds), which alone would take over an hour.
BUDGET_LIMITS: dict[str, tuple[str, ...]] = {"opennsfw-224": ("2KiB",)}
# Test images per task (a seeded, class-stratified subset when the split is larger): the
# ResNet-50 at 224 px embeds ~10-40 images/s on 2 cores.
MAX_TEST = 2000


def test_subset(labels: np.ndarray, limit: int, *, seed: int = 0) -> np.ndarray:
    """Sorted row indices: all rows when there are at most `limit`, else a stratified sample."""
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    picked = [
        rng.permutation(np.flatnonzero(labels == c))[: max(1, round(limit * np.mean(labels == c)))]
        for c in np.unique(labels)
    ]
    return np.sort(np.concatenate(picked))


QUICK_BUDGETS = ("8KiB",)


def verified_payload(ctx: BenchContext, path: Path) -> Any:
    """The payload at `path`, verified and checked against the corpus as an agent would."""
    from plada.payload import check_corpus, decode_payload
    from plada.signing import load_trusted_keys

    payload = decode_payload(
        path.read_bytes(), trusted_keys=load_trusted_keys([ctx.public_key_path()])
    )
    check_corpus(payload, fingerprint=ctx.corpus().fingerprint, size=len(ctx.corpus()))
    return payload


def _kept_features(ctx: BenchContext, name: str, spec: str, indices: np.ndarray) -> np.ndarray:
    """(len(indices), D) device features of the kept reference images."""
    if spec in (ctx.device, ctx.teacher_encoder):  # whole-corpus cache already built
        return np.asarray(ctx.features(name, spec).reference[indices], dtype=np.float32)
    return ctx.reference_rows(spec, indices)


def within_limit(spec: str, budget: str) -> bool:
    """Whether encoder `spec` runs payloads of `budget` (BUDGET_LIMITS; no entry: every budget)."""
    return spec not in BUDGET_LIMITS or budget in BUDGET_LIMITS[spec]


def class_budgets(spec: str, budgets: tuple[str, ...]) -> tuple[str, ...]:
    """The budgets device class `spec` is run at: `budgets` within its limit (never none)."""
    return tuple(b for b in budgets if within_limit(spec, b)) or budgets[:1]


def class_features(
    ctx: BenchContext, name: str, spec: str, test_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(train (N, D), test (len(test_rows), D)) features of task `name` under encoder `spec`."""
    if spec in (ctx.device, ctx.teacher_encoder):  # whole-task cache already built
        feats = ctx.features(name, spec)
        return feats.train, feats.test[test_rows]
    images = ctx.images(name)
    test = ctx.cached_image_features(spec, [images.test[int(i)] for i in test_rows])
    return ctx.cached_image_features(spec, images.train), test


def run_task(ctx: BenchContext, name: str, budgets: tuple[str, ...]) -> dict[str, Any]:
    task = ctx.target(name)
    payloads = {
        (budget, seed): verified_payload(ctx, payload_path(ctx, name, budget, seed))
        for budget in budgets
        for seed in (ctx.auto_seeds if ctx.auto_seeds is not None else ctx.seeds)
        if payload_path(ctx, name, budget, seed).exists()
    }
    if not payloads:
        raise FileNotFoundError(
            f"no auto payloads for {name} under {ctx.work / 'payloads'}: run bench.accuracy first"
        )
    test_rows = test_subset(task.test.labels, MAX_TEST)
    y_test = task.test.labels[test_rows]
    runs: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for device_class, spec in DEVICE_CLASSES:
        started = time.perf_counter()
        try:
            train, test = class_features(ctx, name, spec, test_rows)
            applied = {k: p for k, p in payloads.items() if k[0] in class_budgets(spec, budgets)}
            kept = {k: _kept_features(ctx, name, spec, p.indices) for k, p in applied.items()}
        except Exception as exc:  # an encoder this machine cannot load: report why
            errors[spec] = f"{type(exc).__name__}: {exc}"
            log(f"hetero {name}: {spec} unavailable: {errors[spec]}")
            continue
        with single_blas():
            runs.extend(
                apply_payloads(
                    task,
                    applied,
                    kept,
                    train,
                    (test, y_test),
                    device=(device_class, spec),
                    sizes={k: payload_path(ctx, name, *k).stat().st_size for k in applied},
                )
            )
        log(f"hetero {name}: {spec} done in {time.perf_counter() - started:.0f} s")
    return _summarise(runs, errors, budgets)


def apply_payloads(
    task: Any,
    payloads: dict[tuple[str, int], Any],
    kept: dict[tuple[str, int], np.ndarray],
    train: np.ndarray,
    test_set: tuple[np.ndarray, np.ndarray],
    *,
    device: tuple[str, str],
    sizes: dict[tuple[str, int], int],
) -> list[dict[str, Any]]:
    """Each payload applied on one device class: its head vs its own device-oracle. `kept`:
    each payload's (keep, D) features of its kept reference images on this class."""
    from builder.pipeline.simulate import device_oracle, evaluate_head
    from plada.head import HeadHyperParams, train_head

    y_train = task.train.labels
    test, y_test = test_set
    runs: list[dict[str, Any]] = []
    for (budget, seed), payload in payloads.items():
        hp = replace(HeadHyperParams(), seed=seed)
        weights = train_head(
            kept[(budget, seed)], payload.labels, num_classes=task.num_classes, hp=hp
        ).weights
        result = evaluate_head(weights, test, y_test)
        oracle = device_oracle(train, y_train, test, y_test, num_classes=task.num_classes, hp=hp)
        runs.append(
            {
                "device_class": device[0],
                "encoder": device[1],
                "budget": budget,
                "seed": seed,
                "payload_bytes": sizes[(budget, seed)],
                "keep": len(payload.indices),
                "strategy": payload.provenance.strategy,
                "accuracy": result.accuracy,
                "balanced_accuracy": result.balanced_accuracy,
                "oracle_accuracy": oracle.accuracy,
                "oracle_balanced_accuracy": oracle.balanced_accuracy,
            }
        )
    return runs


def _summarise(
    runs: list[dict[str, Any]], errors: dict[str, str], budgets: tuple[str, ...]
) -> dict[str, Any]:
    summary = []
    for device_class, spec in DEVICE_CLASSES:
        for budget in budgets:
            rs = pick(runs, encoder=spec, budget=budget)
            if not rs:
                continue
            summary.append(
                {
                    "device_class": device_class,
                    "encoder": spec,
                    "budget": budget,
                    "payload_bytes": mean_spread(r["payload_bytes"] for r in rs),
                    "accuracy": mean_spread(r["accuracy"] for r in rs),
                    "balanced_accuracy": mean_spread(r["balanced_accuracy"] for r in rs),
                    "oracle_accuracy": mean_spread(r["oracle_accuracy"] for r in rs),
                    "oracle_balanced_accuracy": mean_spread(
                        r["oracle_balanced_accuracy"] for r in rs
                    ),
                    "relative_to_oracle": mean_spread(
                        r["accuracy"] / r["oracle_accuracy"] for r in rs if r["oracle_accuracy"]
                    ),
                    "balanced_relative_to_oracle": mean_spread(
                        r["balanced_accuracy"] / r["oracle_balanced_accuracy"]
                        for r in rs
                        if r["oracle_balanced_accuracy"]
                    ),
                }
            )
    return {"runs": runs, "unavailable": errors, "summary": summary}


def run(ctx: BenchContext) -> dict[str, Any]:
    budgets: tuple[str, ...] = QUICK_BUDGETS if ctx.quick else BUDGETS
    if ctx.hetero_budgets is not None:
        budgets = ctx.hetero_budgets
    elif ctx.budgets is not None:
        budgets = tuple(b for b in budgets if b in ctx.budgets) or ctx.budgets[-1:]
    started = time.perf_counter()
    out: dict[str, Any] = {
        "payloads_chosen_for": ctx.device,
        "teacher_encoder": ctx.teacher_encoder,
        "teacher_encoders": ctx.auto_teachers,  # the --auto builds keep the better of these
        "device_classes": [{"device_class": d, "encoder": s} for d, s in DEVICE_CLASSES],
        "budgets": list(budgets),
        "budget_limits": {spec: list(class_budgets(spec, budgets)) for _, spec in DEVICE_CLASSES},
        "seeds": list(ctx.auto_seeds if ctx.auto_seeds is not None else ctx.seeds),
        "max_test_images": MAX_TEST,
        "tasks": {},
    }
    for name in ctx.tasks:
        out["tasks"][name] = run_task(ctx, name, budgets)
        write_json(ctx.out / "hetero.json", out)
    out["seconds"] = round(time.perf_counter() - started, 1)
    write_json(ctx.out / "hetero.json", out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hetero", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    ctx = BenchContext(data=args.data, quick=args.quick, seeds=(0,) if args.quick else (0, 1, 2))
    run(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
