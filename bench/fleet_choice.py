"""Choosing for the fleet -> bench/results/fleet_targets.json (`make bench`'s `fleet_targets`
module) and bench/results/fleet_choice.json (the before/after comparison, run by hand).

    .venv/bin/python -m bench.run --data data --only fleet_targets      # as `make bench` does
    .venv/bin/python -m bench.fleet_choice --data data [--tasks digits,fashion]
        [--budgets 2KiB,8KiB] [--seeds 0,1,2] [--modes before,after]
        [--cache data/cache/embeddings] [--out bench/results/fleet_choice.json]

Per task, budget and seed, `plada-build task --auto` on the four Lite device classes with views
on: `after` with the defaults (the worst class's validated ratio to its own oracle, finalists on
more splits) and, for the comparison, `before`, choosing for the default class alone as builds did
before issue 16 (`--fleet-objective default --finalists 0`: the same choice, the other classes
validated for the report only). Each row: per class the validated (expected) balanced accuracy,
its validated oracle and their ratio, the simulated test accuracy and its ratio to the class's own
oracle; the worst class; the teacher's test score; the chosen candidate's validated spread; wall
time and the report's per-stage timings. In `make bench` the payloads are then applied to the
classes no build validated (bench.fleet_unvalidated: the ResNet-50). The file is rewritten after
every build, so a long run leaves what it measured, and a run started again reuses every build
the same commit made with the same command (its payload, report and `bench-build.json` kept).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import ROOT, BenchContext, log, write_json

RESULTS = Path("bench/results/fleet_choice.json")
STAMP = "bench-build.json"  # next to a build's report.json: the code and command that made it
LITE_CLASSES = "lite0-64-int8,lite1-96-int8,lite1-96,lite1-128"
BUDGETS = ("2KiB", "8KiB")
QUICK_BUDGETS = ("8KiB",)
MODES: dict[str, list[str]] = {
    "before": ["--fleet-objective", "default", "--finalists", "0"],
    "after": [],
}


class BuildFailed(RuntimeError):
    """A `plada-build task` run that exited non-zero; the message ends with its last stderr line."""


@dataclass(frozen=True)
class FleetBuilds:
    """Where and how the builds run: `plada-build task` arguments shared by every build."""

    data: Path
    cache: Path
    work: Path  # payloads, reports
    key: Path  # the signing key's private.pem
    devices: str = LITE_CLASSES
    views: str = "auto"

    def payload(self, task: str, budget: str, seed: int, mode: str) -> Path:
        return self.work / f"{task}-{budget}-s{seed}-{mode}.plada"


def code_identity() -> str | None:
    """The commit the builds run, or None when the builder's or plada's files differ from it
    (then no earlier build is reused)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "builder", "plada"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return None if dirty or not head else head


def _reused(report_dir: Path, stamp: dict[str, Any]) -> dict[str, Any] | None:
    """The report of an earlier build with the same code and command (an interrupted run's),
    with its wall time; None when there is none."""
    try:
        earlier = json.loads((report_dir / STAMP).read_text(encoding="utf-8"))
        report: dict[str, Any] = json.loads((report_dir / "report.json").read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if {k: earlier.get(k) for k in stamp} != stamp or not isinstance(earlier.get("wall_s"), float):
        return None
    report["wall_s"] = earlier["wall_s"]
    return report


def build(builds: FleetBuilds, task: str, budget: str, seed: int, mode: str) -> dict[str, Any]:
    """One `plada-build task` run; its report.json with the wall time. A build this code already
    made with the same command (an interrupted run's, payload and report kept) is reused."""
    out = builds.payload(task, budget, seed, mode)
    report_dir = out.with_suffix("")
    command = [
        sys.executable, "-m", "builder", "task", "--corpus", str(builds.data / "ref-v1"),
        "--target", str(builds.data / "targets" / task), "--budget", budget, "--auto",
        "--devices", builds.devices, "--views", builds.views, "--key", str(builds.key),
        "--out", str(out), "--report", str(report_dir),
        "--cache", str(builds.cache), "--seed", str(seed), "--no-progress", *MODES[mode],
    ]  # fmt: skip
    code = code_identity()
    stamp = {"code": code, "command": command}
    if code is not None and out.exists() and (earlier := _reused(report_dir, stamp)) is not None:
        log(f"  {out.name}: reused (built by this code with the same command)")
        return earlier
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BuildFailed(f"exit {done.returncode}: {lines[-1] if lines else 'no output'}")
    report: dict[str, Any] = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    report["wall_s"] = time.perf_counter() - start
    write_json(report_dir / STAMP, stamp | {"wall_s": report["wall_s"]})
    return report


def measured(builds: FleetBuilds, task: str, budget: str, seed: int, mode: str) -> dict[str, Any]:
    """One build as a results row."""
    log(f"fleet choice: {task} {budget} seed {seed} {mode}")
    entry = {"task": task, "budget": budget, "seed": seed, "mode": mode}
    out = entry | row(build(builds, task, budget, seed, mode))
    log(f"  worst {mode} {out['worst_class']} {out['worst_val_ratio']:.3f}, {out['wall_s']:.0f} s")
    return out


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


def run(ctx: BenchContext) -> dict[str, Any]:
    """`make bench`'s fleet_targets module: the defaults (`after`) for ctx's tasks and seeds at
    2 and 8 KiB, each task's payloads then applied to the classes no build validated."""
    from bench.fleet_unvalidated import apply_unvalidated, unvalidated_classes
    from bench.hetero import MAX_TEST

    budgets: tuple[str, ...] = QUICK_BUDGETS if ctx.quick else BUDGETS
    if ctx.budgets is not None:
        budgets = tuple(b for b in budgets if b in ctx.budgets) or ctx.budgets[-1:]
    builds = FleetBuilds(  # signed with the bench's key, so hetero's verifier trusts them
        data=ctx.data, cache=ctx.cache_root, work=ctx.work / "fleet", key=ctx.private_key_path()
    )
    validated = LITE_CLASSES.split(",")
    out: dict[str, Any] = {
        "what": "--auto choosing for the worst of the four Lite classes, views on",
        "devices": builds.devices,
        "views": builds.views,
        "applied": [spec for _, spec in unvalidated_classes(validated)],
        "max_test_images": MAX_TEST,
        "rows": [],
        "failed": [],
        "unavailable": {},
    }
    started = time.perf_counter()
    for task in ctx.tasks:
        done: list[tuple[dict[str, Any], Path]] = []
        for budget in budgets:
            for seed in ctx.seeds:
                try:  # one failed build is reported, and the other builds still run
                    row_of = measured(builds, task, budget, seed, "after")
                except BuildFailed as exc:
                    log(f"fleet choice: {task} {budget} seed {seed} failed: {exc}")
                    out["failed"].append(
                        {"task": task, "budget": budget, "seed": seed, "error": str(exc)}
                    )
                else:
                    done.append((row_of, builds.payload(task, budget, seed, "after")))
                    out["rows"].append(row_of)
                write_json(ctx.out / "fleet_targets.json", out)
        if done:
            for spec, why in apply_unvalidated(ctx, task, done, validated=validated).items():
                earlier = out["unavailable"].get(spec)
                out["unavailable"][spec] = f"{earlier}; {why}" if earlier else why
        write_json(ctx.out / "fleet_targets.json", out)
    out["seconds"] = round(time.perf_counter() - started, 1)
    write_json(ctx.out / "fleet_targets.json", out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--tasks", default="digits,fashion")
    parser.add_argument("--budgets", default=",".join(BUDGETS))
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
        builds = FleetBuilds(
            data=args.data,
            cache=args.cache,
            work=work,
            key=work / "keys" / "private.pem",
            devices=args.devices,
            views=args.views,
        )
        for task in args.tasks.split(","):
            for budget in args.budgets.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    for mode in args.modes.split(","):
                        rows.append(measured(builds, task, budget, seed, mode))
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
