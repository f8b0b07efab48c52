"""Device cost -> bench/results/device.json (and the agent engineer's bench/results/agent.json).

    .venv/bin/python -m bench.device --data data

Reuses bench/agent.py (the agent engineer's benchmark) piece by piece, so its measurements are the
ones reported:
1. encoder throughput per backend (ORT fp32, ORT int8, TFLite fp32, torch eager as the baseline)
   and the ratios to torch eager. The .tflite is exported in a child process with the optional
   litert-torch environment ($PLADA_LITERT_PYTHON or .venv-litert, `make setup-litert`) when it
   is missing; without that environment TFLite is reported as not measured, saying how to get it;
2. the device feature cache built from cold for the reference corpus (the real ref-v1 when it
   holds >= 5,000 images, else the small corpus plus mirrored copies) with the device encoder;
3. payload -> stored model for 5,000 kept images with that warm cache, per head backend, as the
   real CLI (`plada-agent apply --json`) in a child process, with the child's peak RSS;
4. the accuracy cost of the float16 feature cache;
and, as `bench.run`'s module `budget` or with `--budget-only`, the device on a Raspberry-Pi-4-like
budget, one core and a memory cap (bench/device_budget.py -> device_budget.json).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import ROOT, BenchContext, log, write_json

LITERT_PYTHON_ENV = "PLADA_LITERT_PYTHON"
_LITERT_VENV_PY = ROOT / ".venv-litert" / "bin" / "python"


def litert_python() -> Path | None:
    """The python of the litert-torch environment: $PLADA_LITERT_PYTHON, else .venv-litert's."""
    given = os.environ.get(LITERT_PYTHON_ENV)
    if given:
        return Path(given)
    return _LITERT_VENV_PY if _LITERT_VENV_PY.exists() else None


def ensure_tflite(enc_dir: Path, python: Path | None) -> tuple[Path | None, str]:
    """(`lite0-64.tflite`, "measured") when it exists or the litert python exports it beside
    the ONNX export (sharing its sidecar), else (None, a note saying why and how to get it)."""
    path = enc_dir / "lite0-64.tflite"
    if path.exists():
        return path, "measured"
    if python is None:
        return None, (
            "not measured: no lite0-64.tflite export and no litert-torch environment to make "
            "one (`make setup-litert` creates .venv-litert, ~2.6 GB; shared/docs/stack.md)"
        )
    if not python.exists():
        return None, f"not measured: {LITERT_PYTHON_ENV}={python} does not exist"
    export_log = enc_dir / "lite0-64.tflite.log"
    log(f"device: exporting lite0-64.tflite with {python} (litert-torch, nice 19; {export_log})")
    # A child process: litert-torch (jax, transformers) lives only in its own environment.
    cmd = ["nice", "-n", "19", str(python), "-m", "builder.cli", "export-encoder"]
    cmd += ["--model", "lite0", "--size", "64", "--tflite-only", "--out", str(enc_dir)]
    with export_log.open("w", encoding="utf-8") as handle:
        done = subprocess.run(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not path.exists():
        lines = export_log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        last = lines[-1] if lines else "no output"
        return None, (
            f"not measured: the TFLite export with {python} failed (exit {done.returncode}): "
            f"{last} (log: {export_log})"
        )
    return path, "measured"


def tflite_parity(corpus: Any, tflite: Path, fp32: Path, *, n: int = 256) -> dict[str, float]:
    """TFLite vs ORT fp32 features of the first n corpus images (the throughput batch)."""
    from agent.features import load_extractor
    from builder.encoders.parity import cosine_rows
    from plada.preprocess import preprocess_batch

    batch = preprocess_batch(corpus.images(list(range(min(n, len(corpus))))), size=64)
    lite = load_extractor(tflite, backend="tflite", threads=2)
    ort = load_extractor(fp32, backend="onnxruntime", threads=2)
    a = np.concatenate([lite.embed(batch[i : i + 32]) for i in range(0, len(batch), 32)])
    b = np.concatenate([ort.embed(batch[i : i + 32]) for i in range(0, len(batch), 32)])
    cos = cosine_rows(a, b)
    return {
        "images": len(batch),
        "cosine_mean": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "max_abs_diff": float(np.abs(a - b).max()),
    }


def run(ctx: BenchContext) -> dict[str, Any]:
    from bench import agent as agent_bench
    from plada.corpus import Corpus

    started = time.perf_counter()
    work = (ctx.work / "device").resolve()  # agent configs resolve relative paths from work/
    enc_dir = work / "encoders"
    ref = (ctx.data / "ref-v1").resolve()
    log("device: exporting lite0-64 fp32 + int8 (once)")
    fp32 = agent_bench._export(enc_dir, int8=False, corpus=ref)
    int8 = agent_bench._export(enc_dir, int8=True, corpus=ref)
    paths = {"ort_fp32": fp32, "ort_int8": int8}
    tflite, tflite_note = ensure_tflite(enc_dir, litert_python())
    if tflite is not None:
        paths["tflite_fp32"] = tflite
    corpus = Corpus.open(ref)
    log("device: encoder throughput")
    encoders = agent_bench.bench_encoders(corpus, paths)
    parity = None if tflite is None else tflite_parity(corpus, tflite, fp32)
    big = corpus if len(corpus) >= agent_bench.KEPT else agent_bench.bench_corpus(ref, work)
    # Cold start: the warm-cache number is the feature-cache build time for this corpus.
    shutil.rmtree(work / "cache", ignore_errors=True)
    for state in work.glob("state-*"):
        shutil.rmtree(state, ignore_errors=True)
    log(f"device: feature cache for {len(big)} images, then apply 5,000 kept images")
    apply = agent_bench.bench_apply(big, int8, work)
    log("device: float16 cache cost")
    fp16 = agent_bench.bench_float16(ctx.data, int8)
    out: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count()},
        "encoder": "lite0-64 (int8 = the raspberry-pi-4 device class)",
        "encoder_images_per_second": encoders,
        "tflite": tflite_note,
        "tflite_vs_ort_fp32": parity,
        "cache_corpus": {
            "path": str(big.path),
            "images": len(big),
            "is_ref_v1": big is corpus,
        },
        "apply_5000_warm_cache": apply,
        "float16_cache_cost": fp16,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(ctx.out / "device.json", out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.device", description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument(
        "--litert-python",
        type=Path,
        default=None,
        help=f"python of a litert-torch environment for the TFLite export (sets "
        f"${LITERT_PYTHON_ENV}; default .venv-litert/bin/python if present)",
    )
    parser.add_argument(
        "--budget-only",
        action="store_true",
        help="only the Raspberry-Pi-4-like budget (one core, a memory cap; bench/device_budget.py)",
    )
    parser.add_argument(
        "--code",
        type=Path,
        default=ROOT,
        help="with --budget-only: run another checkout's agent (the code before a change); its "
        "runs are stored as `before` in device_budget.json",
    )
    args = parser.parse_args(argv)
    if args.litert_python is not None:
        os.environ[LITERT_PYTHON_ENV] = str(args.litert_python)
    ctx = BenchContext(data=args.data)
    if args.budget_only:
        run_budget(ctx, code=args.code)
    else:
        run(ctx)
    return 0


def run_budget(ctx: BenchContext, *, code: Path = ROOT) -> dict[str, Any]:
    """The device on a Raspberry-Pi-4-like budget -> device_budget.json (bench/device_budget.py),
    with this module's int8 export (calibrated on ref-v1). With another checkout's `code` (the
    code before a change) its apply runs go under `before`, the rest of the file kept."""
    import json

    from bench import agent as agent_bench
    from bench import device_budget

    work = (ctx.work / "device").resolve()
    ref = (ctx.data / "ref-v1").resolve()
    int8 = agent_bench._export(work / "encoders", int8=True, corpus=ref)
    result = device_budget.run_budget(ctx.data, work / "budget", int8, code=code.resolve())
    path = ctx.out / "device_budget.json"
    previous = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if code.resolve() != ROOT:
        result = {**previous, "before": result}
    elif "before" in previous:
        result["before"] = previous["before"]
    write_json(path, result)
    return result


if __name__ == "__main__":
    sys.exit(main())
