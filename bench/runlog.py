"""What a `make bench` run records about itself (machine, commit, per-module times) and reads
back from earlier runs (results, run.json, timings.json)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench._common import ROOT, BenchContext, write_json
from bench.peak_memory import ModulePeak
from bench.schema.system import RunMeta, Timing

MODULES = (
    "codec",
    "corpus",
    "accuracy",
    "alternatives",
    "hetero",
    "fleet_targets",
    "device",
    "budget",
    "builder_warm",
    "embed",
    "multitask",
    "fleet",
)
# Results rendered into the README but produced by their own target, not by `bench.run`
# (`make bench-corpus-scale`: derived corpora of 100k to 1M images, an hour of a 2-core machine).
SEPARATE_RESULTS = ("corpus_scale",)
# else <module>.json
RESULT_FILES = {
    "codec": "bench-codec",
    "corpus": "bench-corpus",
    "embed": "embed_pipeline",
    "budget": "device_budget",
}


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gib: float | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024**2, 1)
    return {
        "cpu_model": cpu,
        "nproc": os.cpu_count(),
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "loadavg_start": round(os.getloadavg()[0], 1),
    }


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def load_previous(out: Path) -> tuple[dict[str, Any], RunMeta]:
    """(results of every module from its JSON, run.json) of earlier runs, when present."""
    results: dict[str, Any] = {}
    for name in (*MODULES, *SEPARATE_RESULTS):
        path = out / f"{RESULT_FILES.get(name, name)}.json"
        if path.exists():
            results[name] = json.loads(path.read_text(encoding="utf-8"))
    run_path = out / "run.json"
    meta = RunMeta.model_validate_json(run_path.read_bytes()) if run_path.exists() else RunMeta()
    for name, error in meta.errors.items():
        results.setdefault(name, {"error": error})
    return results, meta


def read_timings(out: Path) -> dict[str, Timing]:
    path = out / "timings.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: Timing.model_validate(row) for name, row in data.items()}


def record_timing(
    out: Path, name: str, seconds: float, error: str | None, peak: ModulePeak | None = None
) -> None:
    """Per-module run time (and error, and peak memory) merged into timings.json right away, so
    invocations that run different modules side by side all end up in the README's run time."""
    timings = read_timings(out)
    timings[name] = Timing(
        seconds=seconds,
        error=error,
        peak_rss_mb=None if peak is None else peak.own_mb,
        child_peak_rss_mb=None if peak is None else peak.child_mb,
    )
    write_json(out / "timings.json", {k: v.model_dump() for k, v in timings.items()})


def reductions(ctx: BenchContext) -> list[str]:
    """What this configuration leaves out of the full benchmark, in words."""
    from bench.accuracy import BUDGETS, RATIOS
    from bench.hetero import BUDGETS as HETERO_BUDGETS

    notes = ["--quick smoke configuration"] if ctx.quick else []
    if len(ctx.seeds) < 3:
        notes.append(f"seeds {', '.join(map(str, ctx.seeds))} only (full: 0, 1, 2)")
    if ctx.auto_seeds is not None and len(ctx.auto_seeds) < len(ctx.seeds):
        notes.append(
            f"--auto builds (byte budgets, hetero, alternatives' PLADA column) for seed(s) "
            f"{', '.join(map(str, ctx.auto_seeds))} only; the keep-ratio sweep, device-oracle "
            f"and alternatives use seeds {', '.join(map(str, ctx.seeds))}"
        )
    if ctx.ratios is not None and set(ctx.ratios) != set(RATIOS):
        notes.append(f"keep ratios {', '.join(f'{100 * r:g} %' for r in ctx.ratios)} only")
    if ctx.budgets is not None and set(ctx.budgets) != set(BUDGETS):
        notes.append(f"byte budgets {', '.join(ctx.budgets)} only")
    if ctx.hetero_budgets is not None and set(ctx.hetero_budgets) != set(HETERO_BUDGETS):
        notes.append(
            f"heterogeneous devices: the {', '.join(ctx.hetero_budgets)} payloads only "
            f"(full: {', '.join(HETERO_BUDGETS)})"
        )
    return notes
