"""Device cost -> bench/results/device.json (and the agent engineer's bench/results/agent.json).

    .venv/bin/python -m bench.device --data data

Reuses bench/agent.py (the agent engineer's benchmark) piece by piece, so its measurements are the
ones reported:
1. encoder throughput per backend (ORT fp32, ORT int8, TFLite when a .tflite export exists, torch
   eager as the baseline) and the ratios to torch eager;
2. the device feature cache built from cold for the reference corpus (the real ref-v1 when it
   holds >= 5,000 images, else the small corpus plus mirrored copies) with the device encoder;
3. payload -> stored model for 5,000 kept images with that warm cache, per head backend, as the
   real CLI (`plada-agent apply --json`) in a child process, with the child's peak RSS;
4. the accuracy cost of the float16 feature cache.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import BenchContext, log, write_json


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
    tflite = enc_dir / "lite0-64.tflite"
    tflite_note = "measured"
    if tflite.exists():
        paths["tflite_fp32"] = tflite
    else:
        tflite_note = (
            "not measured: no lite0-64.tflite export (TFLite export needs the optional "
            "litert-torch environment, shared/docs/stack.md)"
        )
    corpus = Corpus.open(ref)
    log("device: encoder throughput")
    encoders = agent_bench.bench_encoders(corpus, paths)
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
    args = parser.parse_args(argv)
    run(BenchContext(data=args.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
