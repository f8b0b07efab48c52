"""Choosing for the fleet vs for the default device class -> bench/results/fleet_choice.json.

    .venv/bin/python -m bench.fleet_choice --data data [--tasks digits,fashion]
        [--budgets 2KiB,8KiB] [--seeds 0,1,2] [--modes before,after]
        [--cache data/cache/embeddings] [--out bench/results/fleet_choice.json]

Per task, budget and seed, `plada-build task --auto` on the four Lite device classes twice:
`before` chooses for the default class alone as builds did before issue 16 (`--fleet-objective
default --finalists 0`: the same choice, the other classes validated for the report only) and
`after` with the defaults (the worst class's validated ratio to its own oracle, finalists on more
splits). Each row: per class the validated (expected) balanced accuracy, its validated oracle and
their ratio, the simulated test accuracy and its ratio to the class's own oracle; the worst class;
the chosen candidate's validated spread; wall time and the report's per-stage timings. The file is
rewritten after every build, so a long run leaves what it measured. Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._common import log, write_json

RESULTS = Path("bench/results/fleet_choice.json")
LITE_CLASSES = "lite0-64-int8,lite1-96-int8,lite1-96,lite1-128"
MODES: dict[str, list[str]] = {
    "before": ["--fleet-objective", "default", "--finalists", "0"],
    "after": [],
}


def build(
    data: Path, task: str, budget: str, seed: int, mode: str, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One `plada-build task` run; its report.json with the wall time."""
    name = f"{task}-{budget}-s{seed}-{mode}"
    cache = args.cache
    command = [
        sys.executable, "-m", "builder", "task", "--corpus", str(data / "ref-v1"),
        "--target", str(data / "targets" / task), "--budget", budget, "--auto",
        "--devices", args.devices, "--views", args.views,
        "--key", str(work / "keys" / "private.pem"),
        "--out", str(work / f"{name}.plada"), "--report", str(work / name),
        "--cache", str(cache), "--seed", str(seed), "--no-progress", *MODES[mode],
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    report: dict[str, Any] = json.loads((work / name / "report.json").read_text(encoding="utf-8"))
    report["wall_s"] = time.perf_counter() - start
    return report


def row(report: dict[str, Any]) -> dict[str, Any]:
    """What the comparison needs of one report."""
    fleet = report["fleet"]
    validation = report["validation"]
    view = report.get("view")
    return {
        "strategy": report["strategy"],
        "keep": report["num_indices"],
        "payload_bytes": report["payload_bytes"],
        "view": view["description"] if view else None,
        "teacher": report["teacher"]["encoder"],
        "teacher_accuracy": report["teacher"]["accuracy"],
        "teacher_balanced_accuracy": report["teacher"]["balanced_accuracy"],
        "classes": {
            name: {
                "val_accuracy": c["val_accuracy"],
                "val_oracle": c["val_oracle"],
                "val_ratio": c["val_ratio"],
                "test_balanced_accuracy": c["test_accuracy"],
                "test_balanced_ratio": c["test_ratio"],
                "test_accuracy": report["devices"][name]["accuracy"],
                "test_ratio": report["devices"][name]["relative_to_oracle"],
                "oracle_accuracy": report["devices"][name]["oracle_accuracy"],
                "oracle_balanced_accuracy": report["devices"][name]["oracle_balanced_accuracy"],
            }
            for name, c in fleet["classes"].items()
        },
        "worst_class": fleet["worst_class"],
        "worst_val_ratio": fleet["worst_val_ratio"],
        "worst_test_class": fleet["worst_test_class"],
        "objective": validation.get("objective"),
        "objective_mean": validation.get("objective_mean"),
        "objective_std": validation.get("objective_std"),
        "chosen_std": validation.get("chosen_std"),
        "chosen_splits": validation.get("chosen_splits"),
        "accuracy_estimate": report["accuracy_estimate"],
        "wall_s": round(report["wall_s"], 1),
        "total_s": round(report["total_s"], 1),
        "timings_s": {k: round(v, 2) for k, v in report["timings_s"].items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--tasks", default="digits,fashion")
    parser.add_argument("--budgets", default="2KiB,8KiB")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--modes", default="before,after")
    parser.add_argument("--cache", type=Path, default=Path("data/cache/embeddings"))
    parser.add_argument("--devices", default=LITE_CLASSES, help="device classes to validate")
    parser.add_argument("--views", choices=("auto", "off"), default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep payloads and reports here (default: a temp dir)",
    )
    args = parser.parse_args(argv)
    from plada.signing import generate_keypair

    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fleet-")))
        if not (work / "keys" / "private.pem").exists():
            generate_keypair(work / "keys")
        for task in args.tasks.split(","):
            for budget in args.budgets.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    for mode in args.modes.split(","):
                        log(f"fleet choice: {task} {budget} seed {seed} {mode}")
                        report = build(args.data, task, budget, seed, mode, args, work)
                        entry = {"task": task, "budget": budget, "seed": seed, "mode": mode}
                        rows.append(entry | row(report))
                        log(
                            f"  worst {entry['mode']} {rows[-1]['worst_class']} "
                            f"{rows[-1]['worst_val_ratio']:.3f}, {rows[-1]['wall_s']:.0f} s"
                        )
                        write_json(
                            args.out,
                            {
                                "what": "--auto for the default class (before) vs for the "
                                "worst of the four Lite classes (after)",
                                "devices": args.devices,
                                "views": args.views,
                                "rows": rows,
                            },
                        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
