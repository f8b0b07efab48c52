"""The fleet benchmark over several fleet sizes: payloads, sizes, the record (bench.run's
`fleet` module and `python -m bench.fleet`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench._common import RESULTS, ROOT, BenchContext, log, write_json
from bench.fleet.payloads import BudgetPayload, budget_payload
from bench.fleet.scale import Corpus, ScaleSettings, run_size
from bench.runlog import machine_info
from bench.schema.fleet import FleetResults

FLEET_SIZES = (100, 300, 1000)
QUICK_FLEET_SIZES = (20, 100)
BUDGETS = (2048, 8192)
TARGET = {"agents": 1000, "all_ready_s": 30.0, "lost": 0}
# Without data/ref-v1 (a test, a machine without `make data`): a reference of its size.
STAND_IN_CORPUS = Corpus(fingerprint="f1" * 32, size=83_480)


def _corpus(ctx: BenchContext) -> tuple[Corpus, str]:
    if (ctx.data / "ref-v1").is_dir():
        corpus = ctx.corpus()
        return Corpus(corpus.fingerprint, len(corpus)), f"ref-v1 ({len(corpus):,} images)"
    return STAND_IN_CORPUS, f"a stand-in corpus reference of {STAND_IN_CORPUS.size:,} images"


def _payloads(ctx: BenchContext, corpus: Corpus, budgets: tuple[int, ...]) -> list[BudgetPayload]:
    from plada.payload import CorpusRef

    ref = CorpusRef(fingerprint=corpus.fingerprint, size=corpus.size)
    return [
        budget_payload(budget_bytes=b, version=v, corpus=ref, signing_key=ctx.signing_key())
        for v, b in enumerate(sorted(budgets), start=1)
    ]


def run(
    ctx: BenchContext,
    *,
    sizes: tuple[int, ...] | None = None,
    budgets: tuple[int, ...] = BUDGETS,
    settings: ScaleSettings | None = None,
) -> dict[str, Any]:
    settings = settings or ScaleSettings()
    sizes = sizes or (QUICK_FLEET_SIZES if ctx.quick else FLEET_SIZES)
    corpus, corpus_what = _corpus(ctx)
    payloads = _payloads(ctx, corpus, budgets)
    sizes_text = " and ".join(f"{len(p.data):,} B" for p in payloads)
    out: dict[str, Any] = {
        "payload": f"signed task payloads of {sizes_text} (budgets "
        f"{', '.join(f'{b // 1024} KiB' for b in sorted(budgets))}; the builder's byte search "
        f"over a random keep of {corpus_what}), published chunked at {settings.chunk_bytes} B",
        "machine": machine_info(),
        "settings": {
            "workers": settings.workers,
            "agents_per_worker": settings.agents_per_worker,
            "switch_interval_s": settings.switch_interval_s,
            "worker_nice": settings.worker_nice,
            "chunk_bytes": settings.chunk_bytes,
            "ready_timeout_s": settings.ready_timeout_s,
            "state_on": str(settings.state_parent() or "the default temp folder"),
            "broker_max_connections": settings.tuning.max_connections,
            "broker_nofile_requested": settings.tuning.nofile,
            "broker_autosave_interval_s": settings.tuning.autosave_interval_s,
            "broker_tcp_nodelay": settings.tuning.set_tcp_nodelay,
        },
        "target": TARGET,
        "runs": [],
    }
    for size in sizes:
        out["runs"] += run_size(
            size,
            payloads,
            work=ctx.work / "fleet",
            public_key=ctx.public_key_path(),
            corpus=corpus,
            settings=settings,
        )
        out["machine"]["loadavg_end"] = round(os.getloadavg()[0], 1)
        FleetResults.model_validate(out)  # the record is read back through this model
        write_json(ctx.out / "fleet.json", out)
    return out


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--sizes", type=_ints, default=FLEET_SIZES, help="e.g. 100,300,1000")
    parser.add_argument("--budgets", type=_ints, default=BUDGETS, help="payload budgets in bytes")
    parser.add_argument("--workers", type=int, default=ScaleSettings.workers)
    parser.add_argument("--state-root", type=Path, default=None, help="default: /dev/shm")
    args = parser.parse_args(argv)
    settings = replace(ScaleSettings(), workers=args.workers, state_root=args.state_root)
    ctx = BenchContext(data=args.data.resolve(), out=args.out.resolve(), work=args.work.resolve())
    out = run(ctx, sizes=args.sizes, budgets=args.budgets, settings=settings)
    log(f"fleet: {len(out['runs'])} rows -> {ctx.out / 'fleet.json'}")
    return 0
