"""Accuracy per byte -> bench/results/accuracy.json.

    .venv/bin/python -m bench.accuracy --data data [--quick]

For every target task (digits, fashion, clipart), on the default device class (its own encoder's
features, the agent's head trainer), with the builder's teacher:
- every selection strategy/setting of `--auto` at keep ratios 0.5, 1, 2, 5, 10, 25 % of the corpus,
  with the size of the signed payload it makes;
- `--auto` (the builder's whole task pipeline, `builder.pipeline.build_task`) at byte budgets
  1, 2, 8, 32 KiB, plus every setting at the largest keep that fits each budget (the candidates
  the pipeline tried, evaluated on the test split);
- the teacher, and the device-oracle (the device head trained on the whole labelled train split);
- each for several seeds (head initialisation and batch order, random selections, validation
  folds), reported as mean and sample standard deviation.

The auto payloads are kept under build/bench/payloads/ for bench.hetero and bench.fleet.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import (
    BenchContext,
    log,
    mean_spread,
    pick,
    setting_label,
    write_json,
)
from bench.schema.checkpoints import AccuracyCheckpoint
from builder.pipeline.build import single_blas

RATIOS = (0.005, 0.01, 0.02, 0.05, 0.10, 0.25)
BUDGETS = ("1KiB", "2KiB", "8KiB", "32KiB")
QUICK_RATIOS = (0.01, 0.05)
QUICK_BUDGETS = ("2KiB", "8KiB")


def payload_path(ctx: BenchContext, task: str, budget: str, seed: int) -> Path:
    return ctx.work / "payloads" / f"{task}-{budget}-s{seed}.plada"


def _signed_size(ctx: BenchContext, task: Any, selection: Any) -> int:
    """The signed payload's size, as the builder's byte search measures it."""
    from builder.pipeline.payload import PayloadFields
    from builder.pipeline.sizing import PayloadSizer

    fields = PayloadFields.for_task(
        task=task.name,
        version=1,
        class_names=task.class_names,
        corpus=ctx.corpus(),
        created_at=int(time.time()),
    )
    return PayloadSizer(fields, key_id=ctx.signing_key().key_id).size(selection)


def codec_sizes(
    indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int
) -> dict[str, Any]:
    """Selection bytes of the paper's codec, the best codec, and the bound, for one selection."""
    from bench.codec import bound_bytes
    from plada.codecs import encode_selection

    _, paper = encode_selection(indices, labels, n=n, num_classes=num_classes, codecs=["paper"])
    best_name, best = encode_selection(indices, labels, n=n, num_classes=num_classes)
    return {
        "paper_bytes": len(paper),
        "best_bytes": len(best),
        "best_codec": best_name,
        "bound_bytes": round(bound_bytes(n, labels, num_classes)),
    }


def _teacher_result(ctx: BenchContext, name: str) -> tuple[dict[str, Any], Any]:
    """(the task's result with its teacher filled in, the reference scores of that teacher)."""
    from builder.pipeline.label import label_reference
    from builder.pipeline.teacher import TeacherConfig, balanced_accuracy

    task = ctx.target(name)
    y_train, y_test = task.train.labels, task.test.labels
    tfeat = ctx.features(name, ctx.teacher_encoder)
    # The teacher is deterministic (its L2 is chosen on fixed folds), the same one build_task fits.
    started = time.perf_counter()
    labelling = label_reference(
        tfeat.train,
        y_train,
        tfeat.reference,
        num_classes=task.num_classes,
        temperature=1.0,
        config=TeacherConfig(),
    )
    teacher_pred = labelling.teacher.predict(tfeat.test)
    log(f"{name}: teacher fitted in {time.perf_counter() - started:.1f} s")
    result: dict[str, Any] = {
        "task": name,
        "num_classes": task.num_classes,
        "class_names": list(task.class_names),
        "train_images": len(y_train),
        "test_images": len(y_test),
        "teacher": {
            "encoder": ctx.teacher_encoder,
            "l2": labelling.teacher.l2,
            "accuracy": float(np.mean(teacher_pred == y_test)),
            "balanced_accuracy": balanced_accuracy(teacher_pred, y_test),
        },
        "oracle_per_seed": [],
        "ratio_runs": [],
        "auto_runs": [],
        "budget_candidates": [],
    }
    return result, labelling.scores


def run_task(
    ctx: BenchContext,
    name: str,
    *,
    seeds: tuple[int, ...],
    ratios: tuple[float, ...],
    budgets: tuple[str, ...],
    resume: dict[str, Any] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """One task for the given seeds (summarise() runs after the seeds are merged). `resume`: a
    partial result of an interrupted run (its sweep and finished budgets are kept);
    `checkpoint` is called with the partial result after the sweep and after every budget."""
    from plada.head import HeadHyperParams

    task = ctx.target(name)
    dfeat = ctx.features(name, ctx.device)
    result, scores = _teacher_result(ctx, name)
    auto_seeds = ctx.auto_seeds if ctx.auto_seeds is not None else ctx.seeds
    resume = resume or {}
    for seed in seeds:
        hp = replace(HeadHyperParams(), seed=seed)
        if pick(resume.get("ratio_runs", []), seed=seed):
            for key in ("oracle_per_seed", "ratio_runs"):
                result[key] += pick(resume[key], seed=seed)
            log(f"{name} seed {seed}: keep-ratio sweep reused from an interrupted run")
        else:
            _sweep(ctx, result, task, scores, dfeat, seed=seed, hp=hp, ratios=ratios)
            if checkpoint is not None:
                checkpoint(result)
        for budget in budgets:
            done = pick(resume.get("auto_runs", []), seed=seed, budget=budget)
            if done and payload_path(ctx, name, budget, seed).exists():
                result["auto_runs"] += done
                result["budget_candidates"] += pick(
                    resume["budget_candidates"], seed=seed, budget=budget
                )
                continue
            if seed not in auto_seeds:  # builds only for these seeds; earlier ones are kept
                continue
            _auto(ctx, result, task, seed=seed, budget=budget)
            if checkpoint is not None:
                checkpoint(result)
    return result


def _sweep(
    ctx: BenchContext,
    result: dict[str, Any],
    task: Any,
    scores: Any,
    dfeat: Any,
    *,
    seed: int,
    hp: Any,
    ratios: tuple[float, ...],
) -> None:
    """Every setting at every keep ratio, and the device-oracle, for one seed."""
    from builder.pipeline.candidates import DEFAULT_SETTINGS
    from builder.pipeline.select import FLEET_STRATEGIES, select
    from builder.pipeline.simulate import device_oracle, simulate_selection

    name = task.name
    n_ref = len(ctx.corpus())
    num_classes = task.num_classes
    y_train, y_test = task.train.labels, task.test.labels
    oracle = device_oracle(dfeat.train, y_train, dfeat.test, y_test, num_classes=num_classes, hp=hp)
    result["oracle_per_seed"].append(
        {
            "seed": seed,
            "accuracy": oracle.accuracy,
            "balanced_accuracy": oracle.balanced_accuracy,
        }
    )
    for strategy, params in DEFAULT_SETTINGS:
        if strategy in FLEET_STRATEGIES:  # one device class here: no agreement to draw from
            continue
        for ratio in ratios:
            keep = max(num_classes, round(ratio * n_ref))
            sel = select(scores, strategy=strategy, keep=keep, params=params, seed=seed)
            sim = simulate_selection(
                dfeat.reference, sel, dfeat.test, y_test, num_classes=num_classes, hp=hp
            )
            row: dict[str, Any] = {
                "seed": seed,
                "setting": setting_label(strategy, dict(sel.params)),
                "strategy": strategy,
                "ratio": ratio,
                "keep": sel.keep,
                "payload_bytes": _signed_size(ctx, task, sel),
                "classes_kept": int(np.count_nonzero(sel.class_counts(num_classes))),
                "accuracy": sim.accuracy,
                "balanced_accuracy": sim.balanced_accuracy,
            }
            if seed == ctx.seeds[0]:
                row["codec"] = codec_sizes(
                    sel.indices, sel.labels, n=n_ref, num_classes=num_classes
                )
            result["ratio_runs"].append(row)
    log(f"{name} seed {seed}: {len(DEFAULT_SETTINGS)} settings x {len(ratios)} ratios done")


def _auto(ctx: BenchContext, result: dict[str, Any], task: Any, *, seed: int, budget: str) -> None:
    """`--auto` at one byte budget through the builder's whole task pipeline, with the builder's
    default teachers (one build per teacher encoder, the better-validating one kept)."""
    from builder.pipeline.budget import parse_budget
    from builder.pipeline.build import build_task_multi
    from builder.pipeline.config import TaskConfig
    from plada.atomic import write_bytes_atomic

    name = task.name
    corpus = ctx.corpus()
    started = time.perf_counter()
    build = build_task_multi(
        corpus,
        task,
        teacher_sources=[ctx.precomputed(name, spec) for spec in ctx.auto_teachers],
        device_sources={ctx.device: ctx.precomputed(name, ctx.device)},
        signing_key=ctx.signing_key(),
        config=TaskConfig(budget=parse_budget(budget), default_device=ctx.device, seed=seed),
    )
    payload_path(ctx, name, budget, seed).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(payload_path(ctx, name, budget, seed), build.payload, mode=0o644)
    report = build.record
    result["auto_runs"].append(
        {
            "seed": seed,
            "budget": budget,
            "budget_bytes": int(parse_budget(budget).value),
            "strategy": report.strategy,
            "teacher_encoder": report.teacher.encoder if report.teacher else None,
            "setting": setting_label(report.strategy, dict(report.params)),
            "keep": report.num_indices,
            "payload_bytes": report.payload_bytes,
            "accuracy": report.device_accuracy,
            "balanced_accuracy": report.device_balanced_accuracy,
            "oracle_accuracy": report.device_oracle_accuracy,
            "accuracy_estimate": report.accuracy_estimate,
            "seconds": round(time.perf_counter() - started, 2),
            "peak_rss_mb": report.peak_rss_mb,
        }
    )
    seen: set[str] = set()
    for cand in report.candidates:  # each setting's largest keep comes first
        label = setting_label(cand.strategy, dict(cand.params))
        if label in seen:
            continue
        seen.add(label)
        result["budget_candidates"].append(
            {
                "seed": seed,
                "budget": budget,
                "setting": label,
                "strategy": cand.strategy,
                "keep": cand.keep,
                "payload_bytes": cand.payload_bytes,
                "accuracy": cand.test_accuracy,
                "balanced_accuracy": cand.test_balanced_accuracy,
            }
        )
    log(
        f"{name} seed {seed} {budget}: auto -> {report.strategy} keep "
        f"{report.num_indices}, {report.payload_bytes} B, device "
        f"{100 * report.device_accuracy:.1f} % ({time.perf_counter() - started:.0f} s)"
    )


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Mean and spread over seeds for every (setting, ratio) and (budget) row."""
    oracle = mean_spread(r["accuracy"] for r in result["oracle_per_seed"])
    oracle_bal = mean_spread(r["balanced_accuracy"] for r in result["oracle_per_seed"])
    ratio_rows = []
    settings = list(dict.fromkeys(r["setting"] for r in result["ratio_runs"]))
    ratios = sorted({r["ratio"] for r in result["ratio_runs"]})
    for setting in settings:
        for ratio in ratios:
            runs = pick(result["ratio_runs"], setting=setting, ratio=ratio)
            if runs:
                ratio_rows.append(
                    {
                        "setting": setting,
                        "ratio": ratio,
                        "keep": runs[0]["keep"],
                        "payload_bytes": mean_spread(r["payload_bytes"] for r in runs),
                        "accuracy": mean_spread(r["accuracy"] for r in runs),
                        "balanced_accuracy": mean_spread(r["balanced_accuracy"] for r in runs),
                    }
                )
    budget_rows = []
    for budget in list(dict.fromkeys(r["budget"] for r in result["auto_runs"])):
        runs = pick(result["auto_runs"], budget=budget)
        cands = pick(result["budget_candidates"], budget=budget)
        per_setting = {}
        for setting in list(dict.fromkeys(c["setting"] for c in cands)):
            cs = pick(cands, setting=setting)
            per_setting[setting] = {
                "keep": mean_spread(c["keep"] for c in cs),
                "payload_bytes": mean_spread(c["payload_bytes"] for c in cs),
                "accuracy": mean_spread(c["accuracy"] for c in cs),
                "balanced_accuracy": mean_spread(c["balanced_accuracy"] for c in cs),
            }
        budget_rows.append(
            {
                "budget": budget,
                "budget_bytes": runs[0]["budget_bytes"],
                "auto_choices": [
                    f"{r['setting']} / {r['teacher_encoder']}"
                    if "teacher_encoder" in r
                    else r["setting"]
                    for r in runs
                ],
                "keep": mean_spread(r["keep"] for r in runs),
                "payload_bytes": mean_spread(r["payload_bytes"] for r in runs),
                "accuracy": mean_spread(r["accuracy"] for r in runs),
                "balanced_accuracy": mean_spread(r["balanced_accuracy"] for r in runs),
                "relative_to_oracle": mean_spread(
                    r["accuracy"] / r["oracle_accuracy"] for r in runs if r["oracle_accuracy"]
                ),
                "seconds": mean_spread(r["seconds"] for r in runs),
                "settings_at_cap": per_setting,
            }
        )
    return {
        "teacher_accuracy": result["teacher"]["accuracy"],
        "teacher_balanced_accuracy": result["teacher"]["balanced_accuracy"],
        "oracle_accuracy": oracle,
        "oracle_balanced_accuracy": oracle_bal,
        "ratios": ratio_rows,
        "budgets": budget_rows,
    }


_WORKER_CTX: BenchContext | None = None


Unit = tuple[str, int, tuple[float, ...], tuple[str, ...]]


def unit_path(ctx: BenchContext, unit: Unit) -> Path:
    """Where a finished (task, seed) unit is kept, keyed by everything its numbers depend on."""
    import hashlib

    name, seed, ratios, _budgets = unit
    key = json.dumps(
        [ctx.corpus().fingerprint, ctx.teacher_encoder, ctx.auto_teachers, ctx.device, ratios]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return ctx.work / "units" / f"{name}-s{seed}-{digest}.json"


def run_unit(ctx: BenchContext, unit: Unit) -> dict[str, Any]:
    """One (task, seed) unit; a finished one (and its payloads) is reused, so an interrupted
    sweep resumes where it stopped."""
    name, seed, ratios, budgets = unit
    path = unit_path(ctx, unit)
    auto = seed in (ctx.auto_seeds if ctx.auto_seeds is not None else ctx.seeds)
    payloads = [payload_path(ctx, name, b, seed) for b in budgets] if auto else []
    resume: dict[str, Any] | None = None
    if path.exists():
        resume = AccuracyCheckpoint.read(path)
        done = {r["budget"] for r in resume["auto_runs"]} if resume else set()
        if resume and all(p.exists() for p in payloads) and (not auto or set(budgets) <= done):
            log(f"{name} seed {seed}: reusing {path.name}")
            keep = [r for r in resume["auto_runs"] if r["budget"] in budgets]
            cands = [r for r in resume["budget_candidates"] if r["budget"] in budgets]
            return {**resume, "auto_runs": keep, "budget_candidates": cands}

    def checkpoint(partial: dict[str, Any]) -> None:
        write_json(path, partial)

    with single_blas():
        part = run_task(
            ctx,
            name,
            seeds=(seed,),
            ratios=ratios,
            budgets=budgets,
            resume=resume,
            checkpoint=checkpoint,
        )
    write_json(path, part)
    return part


def _unit(unit: Unit) -> dict[str, Any]:
    """A (task, seed) unit in a forked worker; the context (features in memory) is inherited."""
    assert _WORKER_CTX is not None
    return run_unit(_WORKER_CTX, unit)


def merge_units(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One task's per-seed results merged (the teacher is the same in every part)."""
    merged = {k: v for k, v in parts[0].items() if not isinstance(v, list)}
    for key in ("oracle_per_seed", "ratio_runs", "auto_runs", "budget_candidates"):
        merged[key] = [row for part in parts for row in part[key]]
    merged["class_names"] = parts[0]["class_names"]
    return merged


def run(ctx: BenchContext) -> dict[str, Any]:
    global _WORKER_CTX
    ratios = ctx.ratios or (QUICK_RATIOS if ctx.quick else RATIOS)
    budgets = ctx.budgets or (QUICK_BUDGETS if ctx.quick else BUDGETS)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "corpus": {"size": len(ctx.corpus()), "fingerprint": ctx.corpus().fingerprint},
        "teacher_encoder": ctx.teacher_encoder,
        "device": ctx.device,
        "seeds": list(ctx.seeds),
        "auto_seeds": list(ctx.auto_seeds if ctx.auto_seeds is not None else ctx.seeds),
        "ratios": list(ratios),
        "budgets": list(budgets),
        "jobs": ctx.jobs,
        "tasks": {},
    }
    for name in ctx.tasks:
        # Embedding first, in this process with every thread; workers only read features.
        ctx.precomputed(name, ctx.teacher_encoder)
        ctx.precomputed(name, ctx.device)
        ctx.signing_key()
    auto_seeds = ctx.auto_seeds if ctx.auto_seeds is not None else ctx.seeds
    units: list[Unit] = [(name, seed, ratios, budgets) for name in ctx.tasks for seed in ctx.seeds]
    # The units with --auto builds are the long ones: start them first.
    order = sorted(range(len(units)), key=lambda i: units[i][1] not in auto_seeds)
    if ctx.jobs > 1:
        # Forked workers share the features in memory (copy-on-write); one BLAS thread each.
        _WORKER_CTX = ctx
        with ProcessPoolExecutor(ctx.jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            done = list(pool.map(_unit, [units[i] for i in order]))
        _WORKER_CTX = None
    else:
        done = [run_unit(ctx, units[i]) for i in order]
    parts: list[dict[str, Any]] = [{}] * len(units)
    for i, part in zip(order, done, strict=True):
        parts[i] = part
    for name in ctx.tasks:
        task = merge_units([p for p, u in zip(parts, units, strict=True) if u[0] == name])
        task["summary"] = summarise(task)
        out["tasks"][name] = task
    out["seconds"] = round(time.perf_counter() - started, 1)
    write_json(ctx.out / "accuracy.json", out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 ratios, 2 budgets")
    args = parser.parse_args(argv)
    ctx = BenchContext(data=args.data, quick=args.quick, seeds=(0,) if args.quick else (0, 1, 2))
    run(ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
