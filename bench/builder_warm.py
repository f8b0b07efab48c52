"""One task built on a warm cache, stage by stage -> bench/results/builder_warm.json.

    .venv/bin/python -m bench.builder_warm --data data --label after
    .venv/bin/python -m bench.builder_warm --data data --label before --code /path/to/old/checkout

`plada-build task --auto --budget 8KiB` as a new user runs it (the real CLI in a child process,
its report's per-stage timings), on a task whose reference-corpus features are cached (the
corpus under every encoder and under the view the build proposes), with one teacher
(`lite1-96`) and with the default two (`lite1-96,lite0-64-int8`). Each setting is built twice in
a fresh cache root whose corpus caches are links to the shared ones: *first* (the task's own
images never embedded before) and *again* (a second build of the same task). `--code` runs
another checkout's CLI (the code before a change) on the same data, so one JSON file holds the
runs before and after, each with its commit; the chosen candidate, its selection's digest and
the accuracies show whether a change kept the results.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import RESULTS, ROOT, BenchContext, log, write_json

BUDGET = "8KiB"
TEACHERS = {"one": "lite1-96", "two": "lite1-96,lite0-64-int8"}
ATTEMPTS = ("first", "again")
CORPUS_CACHE = Path("cache/embeddings")  # under the data folder: the CLI's default


def fresh_cache_root(root: Path, shared: Path) -> Path:
    """An empty cache root whose corpus caches (one folder per corpus fingerprint) are links to
    the shared ones, so only what is not a corpus cache (the task's image features) starts
    cold."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for child in shared.iterdir():
        if child.is_dir() and len(child.name) == 16:  # <fingerprint[:16]>
            (root / child.name).symlink_to(child.resolve(), target_is_directory=True)
    return root


def selection_digest(payload: Path, public_key: Path) -> str:
    """sha256 of the payload's indices and labels: equal digests, equal selections (the
    payload bytes also carry a creation time)."""
    from plada.payload import decode_payload
    from plada.signing import load_trusted_keys

    decoded = decode_payload(payload.read_bytes(), trusted_keys=load_trusted_keys([public_key]))
    digest = hashlib.sha256(decoded.indices.astype("<i8").tobytes())
    digest.update(decoded.labels.astype("<i8").tobytes())
    return digest.hexdigest()


def build_once(
    code: Path,
    data: Path,
    task: str,
    teachers: str,
    cache: Path,
    out: Path,
    keys: Path,
    *,
    views: str = "auto",
) -> dict[str, Any]:
    """One `plada-build task` child; its report's numbers and timings."""
    payload, report_dir = out / f"{task}.plada", out / "report"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "builder.cli", "task"]
    cmd += ["--corpus", str(data / "ref-v1"), "--target", str(data / "targets" / task)]
    cmd += ["--budget", BUDGET, "--auto", "--teacher-encoder", teachers, "--seed", "0"]
    cmd += ["--views", views]
    cmd += ["--cache", str(cache), "--key", str(keys / "private.pem")]
    cmd += ["--out", str(payload), "--report", str(report_dir), "--no-progress", "--json"]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=code, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the build (all its threads): a loaded shared machine stretches wall time
    # by whatever the other jobs take, CPU time much less
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "total_s": report["total_s"],
        "timings_s": {k: round(v, 2) for k, v in report["timings_s"].items()},
        "peak_rss_mb": report["peak_rss_mb"],
        "load_average_1min": round(load, 2),
        "result": {
            "teacher": report["teacher"]["encoder"],
            "strategy": report["strategy"],
            "num_indices": report["num_indices"],
            "payload_bytes": report["payload_bytes"],
            "view": None if report.get("view") is None else report["view"]["description"],
            "val_accuracy": [c["val_accuracy"] for c in report.get("teacher_choice") or []],
            "teacher_accuracy": report["teacher_accuracy"],
            "device_accuracy": report["device_accuracy"],
            "leakage_flags": report["leakage_flags"],
            "selection_sha256": selection_digest(payload, keys / "public.pem"),
        },
    }


def commit_of(code: Path) -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def run(
    data: Path,
    work: Path,
    *,
    code: Path,
    label: str,
    tasks: list[str],
    settings: list[str],
    attempts: tuple[str, ...] = ATTEMPTS,
    views: str = "auto",
) -> dict[str, Any]:
    from bench.runlog import machine_info
    from plada.signing import generate_keypair

    keys = work / "keys"
    if not (keys / "private.pem").exists():
        generate_keypair(keys)
    runs: dict[str, Any] = {}
    for task in tasks:
        for setting in settings:
            cache = fresh_cache_root(work / "cache", (data / CORPUS_CACHE).resolve())
            for attempt in attempts:
                log(f"builder warm ({label}): {task}, {setting} teacher(s), {attempt}")
                out = work / "out" / label / task / setting / attempt
                row = build_once(code, data, task, TEACHERS[setting], cache, out, keys, views=views)
                runs[f"{task}/{setting}/{attempt}"] = row
                log(f"  -> {row.get('total_s', row.get('error'))} s")
    return {
        "label": label,
        "code": str(code),
        "commit": commit_of(code),
        "machine": machine_info(),
        "budget": BUDGET,
        "views": views,
        "teachers": {s: TEACHERS[s] for s in settings},
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.builder_warm", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="folder with ref-v1, targets")
    parser.add_argument("--label", default="after", help="name of this run in the JSON file")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose CLI to run")
    parser.add_argument("--tasks", default="fashion", help="comma-separated target tasks")
    parser.add_argument(
        "--commit", default=None, help="the commit of --code when it is not a git checkout"
    )
    parser.add_argument("--settings", default="one,two", help="teacher settings: one, two")
    parser.add_argument(
        "--views",
        choices=("auto", "off"),
        default="auto",
        help="the CLI's --views (auto: a proposed view embeds the corpus once more per encoder)",
    )
    parser.add_argument(
        "--attempts",
        default="first,again",
        help="builds per setting: first, again (code without an image cache: first is enough)",
    )
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench" / "builder_warm")
    parser.add_argument("--out", type=Path, default=RESULTS / "builder_warm.json")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    result = run(
        data,
        args.work.resolve(),
        code=args.code.resolve(),
        label=args.label,
        tasks=[t for t in args.tasks.split(",") if t],
        settings=[s for s in args.settings.split(",") if s],
        attempts=tuple(a for a in args.attempts.split(",") if a in ATTEMPTS),
        views=args.views,
    )
    if args.commit:
        result["commit"] = args.commit
    merge_into(args.out, result)
    return 0


def merge_into(path: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Write `result` under its label into the JSON file, keeping the other labels' runs."""
    previous: dict[str, Any] = {}
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
    previous.setdefault("runs", {})[result["label"]] = result
    write_json(path, previous)
    return previous


def run_bench(ctx: BenchContext) -> dict[str, Any]:
    """`bench.run`'s module builder_warm: the current code, label `after`, fashion."""
    result = run(
        ctx.data.resolve(),
        (ctx.work / "builder_warm").resolve(),
        code=ROOT,
        label="after",
        tasks=["fashion"],
        settings=list(TEACHERS),
    )
    return merge_into(ctx.out / "builder_warm.json", result)


if __name__ == "__main__":
    sys.exit(main())
