"""The label ceiling of the fleet payloads -> bench/results/fleet_ceiling.json.

    .venv/bin/python -m bench.fleet_ceiling --data data --payloads build/bench/fleet

Issue 16 asks, where a target stays out of reach, for the ceiling: true labels on the same
reference images, on each device class. ref-v1 holds the Fashion-MNIST train images with public
labels (bench.ceiling), so for each fashion payload `make bench`'s fleet_targets module kept
(build/bench/fleet/<task>-<budget>-s<seed>-after.plada, no view), each Lite device class's head is
trained on the kept images twice with the same seed: with the payload's labels, and with the true
label on every kept Fashion-MNIST image (the others keep the payload's label); both tested on the
task's whole test split against the class's own oracle. The gap is what a perfect teacher would
add on those images; the rest of the distance to a target is in the images.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import BenchContext, log, write_json
from bench.ceiling import source_rows, true_labels
from bench.fleet_choice import LITE_CLASSES
from builder.pipeline.build import single_blas

SOURCE = {"fashion": "fashion-mnist-train"}
NAME = re.compile(r"(?P<task>\w+)-(?P<budget>\d+KiB)-s(?P<seed>\d+)-after\.plada")


def truth_in_corpus(ctx: BenchContext, task: str) -> tuple[np.ndarray, np.ndarray]:
    """(corpus rows of the task's labelled source (n,), their true class ids (n,))."""
    source = SOURCE[task]
    rows = source_rows(ctx, source)
    index = {name: i for i, name in enumerate(ctx.target(task).class_names)}
    truth = np.array([index[n] for n in true_labels(ctx.data, source)], dtype=np.int64)
    if len(truth) != len(rows):
        raise SystemExit(f"bench.fleet_ceiling: {len(rows)} {source} images, {len(truth)} labels")
    return rows, truth


def measure(ctx: BenchContext, task: str, payloads: list[Path]) -> list[dict[str, Any]]:
    from bench.hetero import verified_payload
    from builder.pipeline.select import Selection
    from builder.pipeline.simulate import device_oracle, simulate_selection
    from plada.head import HeadHyperParams

    target = ctx.target(task)
    rows, truth = truth_in_corpus(ctx, task)
    truth_of = dict(zip(rows.tolist(), truth.tolist(), strict=True))
    y_train, y_test = target.train.labels, target.test.labels
    out = []
    for path in payloads:
        match = NAME.fullmatch(path.name)
        if match is None:
            continue
        payload = verified_payload(ctx, path)
        if payload.view is not None:  # the corpus features under the view are not loaded here
            log(f"{path.name}: carries a view, not measured")
            continue
        seed = int(match["seed"])
        indices = np.asarray(payload.indices, dtype=np.int64)
        sent = np.asarray(payload.labels, dtype=np.int64)
        labelled = np.array([int(i) in truth_of for i in indices])  # (k,) from the source
        true = np.array([truth_of.get(int(i), int(y)) for i, y in zip(indices, sent, strict=True)])
        order = np.argsort(indices)
        row: dict[str, Any] = {
            "budget": match["budget"],
            "seed": seed,
            "keep": len(indices),
            "from_source": int(labelled.sum()),
            "sent_equals_truth": float(np.mean(sent[labelled] == true[labelled]))
            if labelled.any()
            else None,
            "classes": {},
        }
        hp = HeadHyperParams(seed=seed)
        for spec in LITE_CLASSES.split(","):
            feats = ctx.features(task, spec)
            oracle = device_oracle(
                feats.train, y_train, feats.test, y_test, num_classes=target.num_classes, hp=hp
            ).accuracy
            scores = {}
            for kind, labels in (("sent", sent), ("true", true)):
                sel = Selection(indices=indices[order], labels=labels[order], strategy=kind)
                scores[kind] = simulate_selection(
                    feats.reference, sel, feats.test, y_test, num_classes=target.num_classes, hp=hp
                ).accuracy
            row["classes"][spec] = {
                "oracle_accuracy": oracle,
                "sent_labels_ratio": scores["sent"] / oracle,
                "true_labels_ratio": scores["true"] / oracle,
            }
            log(
                f"{path.name} {spec}: sent {100 * scores['sent'] / oracle:.1f} %, true labels "
                f"{100 * scores['true'] / oracle:.1f} % of the oracle"
            )
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_ceiling", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--payloads", type=Path, required=True, help="fleet_targets' work folder")
    parser.add_argument("--work", type=Path, default=None, help="bench work (its keys verify)")
    parser.add_argument("--task", default="fashion", choices=sorted(SOURCE))
    parser.add_argument("--out", type=Path, default=Path("bench/results/fleet_ceiling.json"))
    args = parser.parse_args(argv)
    ctx = BenchContext(data=args.data.resolve())
    ctx.work = (args.work or args.payloads.parent).resolve()
    payloads = sorted(args.payloads.glob(f"{args.task}-*-after.plada"))
    if not payloads:
        raise SystemExit(f"bench.fleet_ceiling: no {args.task} payloads under {args.payloads}")
    with single_blas():
        rows = measure(ctx, args.task, payloads)
    write_json(args.out, {"task": args.task, "source": SOURCE[args.task], "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
