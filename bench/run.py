"""`make bench`: run every benchmark, write bench/results/*.json, summary.md and PNG plots, and
regenerate the README's Results section (between `<!-- results:start -->` and
`<!-- results:end -->`).

    .venv/bin/python -m bench.run --data data            # everything (long on 2 cores)
    .venv/bin/python -m bench.run --data data/small --quick   # smoke test: 1 seed, fewer points
    .venv/bin/python -m bench.run --data data --only accuracy,hetero   # some modules; the others'
                                                         # JSON from an earlier run is reused
    .venv/bin/python -m bench.run --render-only          # re-render from the JSON files

Modules, in order: codec (bench/codec.py), corpus (bench/corpus.py), accuracy, alternatives,
hetero, fleet_targets (`--auto` validating the four Lite classes with views,
bench/fleet_choice.py; `make bench-fleet` runs it alone), device (reusing bench/agent.py), budget
(the device on one core and a memory cap, bench/device_budget.py), builder_warm (one task on a
warm cache, stage by stage), embed (bench/embed_pipeline.py), multitask (predict latency with
1, 2 and 5 installed tasks), fleet (bench/fleet: 100, 300 and 1,000 agents; `make bench-scale`
runs it alone). The corpus-scale
section (bench/corpus_scale.py, 100k to 1M images, about an hour) has its own target,
`make bench-corpus-scale`; its JSON is rendered here when present. A module that fails
is reported in the summary with its error; the others still run. Every number in the outputs
comes from the JSON files.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import ROOT, BenchContext, atomic_write_text, log, write_json
from bench.peak_memory import PeakMeter
from bench.render import make_plots, render_markdown, replace_between_markers
from bench.runlog import (
    MODULES,
    git_commit,
    load_previous,
    machine_info,
    read_timings,
    record_timing,
    reductions,
)
from bench.schema.system import RunMeta


def _run_codec(ctx: BenchContext) -> Any:
    from bench import codec

    rows = []
    for case, n, _k, num_classes, (indices, labels) in codec.cases():
        rows.append(codec.run_case(case, n, num_classes, indices, labels, 1 if ctx.quick else 5))
        log(f"codec {case} C={num_classes}: best {rows[-1]['best_bytes']} B")
    write_json(ctx.out / "bench-codec.json", rows)
    return rows


def _run_corpus(ctx: BenchContext) -> Any:
    from bench import corpus

    # Own file names: codec.json and corpus.json are the codec and corpus owners' committed runs.
    args = ["--data", str(ctx.data), "--out", str(ctx.out / "bench-corpus.json"), "--skip-build"]
    if ctx.quick:
        args += ["--repeats", "1", "--num-reads", "2000", "--deep-sample", "500"]
    with contextlib.redirect_stdout(io.StringIO()):
        code = corpus.main(args)
    if code != 0:
        raise RuntimeError(f"bench.corpus exited {code}")
    return json.loads((ctx.out / "bench-corpus.json").read_text(encoding="utf-8"))


def _runner(name: str, results: dict[str, Any]) -> Callable[[BenchContext], Any]:
    if name == "codec":
        return _run_codec
    if name == "corpus":
        return _run_corpus
    if name == "accuracy":
        from bench import accuracy

        return accuracy.run
    if name == "alternatives":
        from bench import alternatives

        acc = results.get("accuracy")
        return lambda ctx: alternatives.run(ctx, acc if isinstance(acc, dict) else None)
    if name == "hetero":
        from bench import hetero

        return hetero.run
    if name == "fleet_targets":
        from bench import fleet_choice

        return fleet_choice.run
    if name == "device":
        from bench import device

        return device.run
    if name == "budget":
        from bench import device

        return device.run_budget
    if name == "builder_warm":
        from bench import builder_warm

        return builder_warm.run_bench
    if name == "embed":
        from bench import embed_pipeline

        return embed_pipeline.run
    if name == "multitask":
        from bench import multitask

        return multitask.run
    if name == "fleet":
        from bench import fleet

        return fleet.run
    raise ValueError(f"unknown benchmark module {name!r}; choose from {', '.join(MODULES)}")


def render(results: dict[str, Any], out: Path, readme: Path | None) -> None:
    plots = make_plots(results, out)
    # Paths as the README (repository root) and summary.md (bench/results/) see them.
    rel_root = {k: os.path.relpath(p, ROOT) for k, p in plots.items()}
    rel_out = {k: os.path.relpath(p, out) for k, p in plots.items()}
    atomic_write_text(
        out / "summary.md", "# Benchmark results\n\n" + render_markdown(results, rel_out)
    )
    if readme is not None:
        text = readme.read_text(encoding="utf-8")
        body = render_markdown(results, rel_root) + (
            "\nAll tables: `bench/results/summary.md`; raw numbers: `bench/results/*.json`.\n"
        )
        atomic_write_text(readme, replace_between_markers(text, body))
        log(f"README Results section updated ({readme})")


def _ints(text: str | None) -> tuple[int, ...] | None:
    return tuple(int(s) for s in text.split(",")) if text else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="`make data` output")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--no-readme", action="store_true", help="do not touch the README")
    parser.add_argument("--quick", action="store_true", help="smoke test: 1 seed, fewer points")
    parser.add_argument("--seeds", default=None, help="comma-separated (default 0,1,2; quick 0)")
    parser.add_argument("--tasks", default="digits,fashion,clipart")
    parser.add_argument(
        "--auto-seeds", default=None, help="seeds of the --auto builds (default: --seeds)"
    )
    parser.add_argument("--ratios", default=None, help="keep ratios, e.g. 0.005,0.01 (default all)")
    parser.add_argument("--budgets", default=None, help="byte budgets, e.g. 2KiB,8KiB")
    parser.add_argument(
        "--hetero-budgets", default=None, help="budgets of the payloads bench.hetero applies"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes for the accuracy sweep, one BLAS thread each (default: nproc)",
    )
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {MODULES}")
    parser.add_argument("--skip", default="", help="comma-separated modules not to run")
    parser.add_argument("--render-only", action="store_true", help="re-render from the JSON")
    parser.add_argument(
        "--note",
        action="append",
        default=[],
        help="a reduction of this run to state in the README (repeatable)",
    )
    return parser


def _strings(text: str | None) -> tuple[str, ...] | None:
    return tuple(s.strip() for s in text.split(",") if s.strip()) if text else None


def _context(args: argparse.Namespace) -> BenchContext:
    seeds = tuple(int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(","))
    return BenchContext(
        # Absolute: agent configs written under work/ resolve relative paths from there.
        data=args.data.resolve(),
        out=args.out.resolve(),
        work=args.work.resolve(),
        seeds=seeds,
        quick=args.quick,
        tasks=_strings(args.tasks) or (),
        jobs=args.jobs,
        auto_seeds=_ints(args.auto_seeds),
        ratios=tuple(float(r) for r in args.ratios.split(",")) if args.ratios else None,
        budgets=_strings(args.budgets),
        hetero_budgets=_strings(args.hetero_budgets),
    )


def _run_modules(
    chosen: list[str],
    ctx: BenchContext,
    results: dict[str, Any],
    timings: dict[str, float],
    errors: dict[str, str],
    peaks: dict[str, float],
) -> None:
    """Run each module; a failing one is recorded and the others still run."""
    meter = PeakMeter()
    for name in chosen:
        log(f"== {name}")
        meter.start()
        t0 = time.perf_counter()
        try:
            results[name] = _runner(name, results)(ctx)
            errors.pop(name, None)
        except Exception as exc:  # one failing benchmark must not hide the others
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            results[name] = {"error": errors[name]}
        finally:
            ctx.release()  # the next module starts from what it loads itself
        timings[name] = round(time.perf_counter() - t0, 1)
        peak = meter.stop()
        record_timing(ctx.out, name, timings[name], errors.get(name), peak)
        log(f"== {name} done in {timings[name]:.0f} s, peak RSS {peak.peak_mb:,.0f} MB")
    # Other invocations may have run modules meanwhile (in parallel): take their timings.
    for name, row in read_timings(ctx.out).items():
        if row.peak_mb is not None:
            peaks[name] = round(row.peak_mb, 1)
        if name not in chosen:
            timings[name] = row.seconds
            if row.error:
                errors[name] = row.error
            else:
                errors.pop(name, None)


def _meta(
    args: argparse.Namespace,
    argv: list[str] | None,
    ctx: BenchContext,
    chosen: list[str],
    previous: RunMeta,
    *,
    timings: dict[str, float],
    errors: dict[str, str],
    peaks: dict[str, float],
    seconds: float,
    machine: dict[str, Any],
) -> dict[str, Any]:
    """run.json of this invocation (merged with the previous one when only some modules ran);
    `machine` as read when the invocation started (its load average is the one at the start)."""
    corpus_size: Any = None
    with contextlib.suppress(Exception):
        corpus_size = len(ctx.corpus())
    meta: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": git_commit(),
        "machine": machine,
        "data": str(args.data),
        "corpus_size": corpus_size,
        "seeds": list(ctx.seeds),
        "quick": args.quick,
        "teacher_encoder": ctx.teacher_encoder,
        "device": ctx.device,
        "timings": timings,
        "peak_rss_mb": peaks,
        "total_seconds": round(sum(timings.values()), 1),
        "this_invocation_seconds": round(seconds, 1),
        "modules_run": chosen,
        "errors": errors,
        "reduced": list(args.note) + reductions(ctx),
    }
    if previous.model_fields_set and set(chosen) != set(MODULES):
        meta["reduced"] = list(dict.fromkeys([*previous.reduced, *meta["reduced"]]))
        meta["invocations"] = previous.invocations + 1
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    ctx = _context(args)
    chosen = [m for m in _strings(args.only) or MODULES if m not in (_strings(args.skip) or ())]
    for name in chosen:
        if name not in MODULES:
            parser.error(f"unknown module {name!r}; choose from {', '.join(MODULES)}")
    results, previous = load_previous(args.out)
    timings, errors = dict(previous.timings), dict(previous.errors)
    peaks = dict(previous.peak_rss_mb)
    started = time.perf_counter()
    # read before the modules run: read after them, a whole `make bench` recorded the load the
    # 1,000-agent fleet module left behind (55.0) as the load "at the start"
    machine = machine_info()
    if not args.render_only:
        log(f"bench: {', '.join(chosen)} on {args.data} (seeds {ctx.seeds}, quick={args.quick})")
        _run_modules(chosen, ctx, results, timings, errors, peaks)
        meta = _meta(
            args, argv, ctx, chosen, previous,
            timings=timings, errors=errors, peaks=peaks, seconds=time.perf_counter() - started,
            machine=machine,
        )  # fmt: skip
        write_json(args.out / "run.json", meta)
    else:
        meta = previous.model_dump()
        if args.note:  # notes about how the stored results were produced
            meta["reduced"] = list(dict.fromkeys([*previous.reduced, *args.note]))
            write_json(args.out / "run.json", meta)
    results["meta"] = meta
    render(results, args.out, None if args.no_readme else args.readme)
    log(f"bench: done; summary in {args.out / 'summary.md'}")
    return 1 if errors and not args.render_only else 0


if __name__ == "__main__":
    sys.exit(main())
