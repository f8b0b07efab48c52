"""Fleet payloads on the device classes their build did not validate -> rows of fleet_targets.json.

`bench.fleet_choice` validates the four Lite classes; the ResNet-50 class (`opennsfw-224`) is too
costly to embed the whole corpus with on 2 cores, so, as in bench.hetero, each payload is applied
to it the way an agent would: the kept reference images, under the payload's view, embedded with
the class's own encoder, the agent's head trained on them with the payload's labels, tested on
bench.hetero's test subset against the class's own oracle (the same head on the labelled train
split). Budgets follow bench.hetero's per-encoder limits (the ResNet-50: 2 KiB).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench._common import BenchContext, log
from bench.hetero import (
    DEVICE_CLASSES,
    MAX_TEST,
    apply_payloads,
    class_features,
    test_subset,
    verified_payload,
    within_limit,
)
from builder.pipeline.build import single_blas


def unvalidated_classes(validated: Sequence[str]) -> list[tuple[str, str]]:
    """(device class, encoder spec) of bench.hetero's classes that no build validated."""
    return [(name, spec) for name, spec in DEVICE_CLASSES if spec not in validated]


def class_row(run: Mapping[str, Any]) -> dict[str, Any]:
    """One bench.hetero run as a fleet_targets class entry (no validated score: not validated)."""
    oracle, oracle_bal = run["oracle_accuracy"], run["oracle_balanced_accuracy"]
    return {
        "val_ratio": None,
        "test_accuracy": run["accuracy"],
        "test_ratio": run["accuracy"] / oracle if oracle else None,
        "test_balanced_accuracy": run["balanced_accuracy"],
        "test_balanced_ratio": run["balanced_accuracy"] / oracle_bal if oracle_bal else None,
        "oracle_accuracy": oracle,
        "oracle_balanced_accuracy": oracle_bal,
    }


def apply_unvalidated(
    ctx: BenchContext,
    task_name: str,
    builds: Sequence[tuple[dict[str, Any], Path]],
    *,
    validated: Sequence[str],
) -> dict[str, str]:
    """Adds each unvalidated class's entry to the `classes` of every (row, payload file) in
    `builds` (one task) at the budgets bench.hetero limits that class to (none outside them);
    returns {spec: why} for a class that could not be measured here (an encoder that cannot be
    loaded, a payload that does not verify): the other classes and tasks still run."""
    task = ctx.target(task_name)
    test_rows = test_subset(task.test.labels, MAX_TEST)
    errors: dict[str, str] = {}
    for device_class, spec in unvalidated_classes(validated):
        picked = [(row, path) for row, path in builds if within_limit(spec, row["budget"])]
        if not picked:
            continue
        try:
            payloads = {
                (row["budget"], row["seed"]): verified_payload(ctx, path) for row, path in picked
            }
            train, test = class_features(ctx, task_name, spec, test_rows)
            kept = {
                key: ctx.reference_rows(spec, payload.indices, payload.view)
                for key, payload in payloads.items()
            }
            with single_blas():
                runs = apply_payloads(
                    task,
                    payloads,
                    kept,
                    train,
                    (test, task.test.labels[test_rows]),
                    device=(device_class, spec),
                    sizes={(r["budget"], r["seed"]): path.stat().st_size for r, path in picked},
                )
        except Exception as exc:  # reported with its reason, never a lost run
            errors[spec] = f"{task_name}: {type(exc).__name__}: {exc}"
            log(f"fleet: {spec} not measured: {errors[spec]}")
            continue
        by_key = {(r["budget"], r["seed"]): r for r in runs}
        for row, _ in picked:
            row["classes"][spec] = class_row(by_key[(row["budget"], row["seed"])])
        log(f"fleet {task_name}: {spec} applied to {len(picked)} payloads")
    return errors
