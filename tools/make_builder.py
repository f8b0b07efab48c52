"""`make builder`: payloads and reports for the three default targets on ref-v1, under build/.

    .venv/bin/python -m tools.make_builder --data data --out build

For every target (digits, fashion, clipart) and budget (2 KiB and 8 KiB by default) it runs the
task pipeline in `--auto` mode and writes `build/<task>-<budget>.plada` and the report folder
`build/<task>-<budget>/`. With several `--seeds`, the payload and report are those of the first
seed and `build/summary.json` / `summary.md` give every seed and the mean, relative to each task's
device-oracle. A signing key is generated under `build/keys/` when `--key` is not given.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from builder.pipeline.build import BuildResult
    from builder.report.model import BuildReport

DEFAULT_TASKS = ("digits", "fashion", "clipart")
DEFAULT_BUDGETS = ("2KiB", "8KiB")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from builder.commands.task import DEFAULT_TEACHER_ENCODER
    from plada.encoders import DEFAULT_DEVICE_ENCODER

    parser = argparse.ArgumentParser(prog="python -m tools.make_builder", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="data folder of `make data`")
    parser.add_argument("--out", type=Path, required=True, help="output folder (build/)")
    parser.add_argument("--key", type=Path, default=None, help="private key (default: generate)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated")
    parser.add_argument("--budgets", default=",".join(DEFAULT_BUDGETS), help="comma-separated")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (summary averages)")
    parser.add_argument(
        "--devices", default=DEFAULT_DEVICE_ENCODER, help="device classes, first = default"
    )
    parser.add_argument("--teacher-encoder", default=DEFAULT_TEACHER_ENCODER)
    parser.add_argument("--teacher-backend", choices=("onnx", "torch", "auto"), default="onnx")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def _ensure_key(args: argparse.Namespace) -> Path:
    from plada.signing import generate_keypair

    if args.key is not None:
        return Path(args.key)
    key_dir = Path(args.out) / "keys"
    private = key_dir / "private.pem"
    if not private.exists():
        generate_keypair(key_dir)
    return private


def _summary_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| task | budget | seeds | strategy (seed 0) | bytes | teacher | device | oracle | "
        "device / oracle | balanced / oracle |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['budget']} | {len(r['seeds'])} | {r['strategy']} | "
            f"{r['payload_bytes']} | {100 * r['teacher_accuracy']:.1f} | "
            f"{100 * r['device_accuracy_mean']:.1f} ± {100 * r['device_accuracy_std']:.1f} | "
            f"{100 * r['device_oracle_accuracy']:.1f} | {100 * r['relative_mean']:.1f} % | "
            f"{100 * r['balanced_relative_mean']:.1f} % |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from builder.errors import BuilderError
    from plada.errors import PladaError

    try:
        rows = _build_all(args)
    except (BuilderError, PladaError) as exc:
        print(f"make builder: {exc}", file=sys.stderr)
        return 1
    print(_summary_markdown(rows))
    return 0


def _build_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every task x budget x seed; the first seed's payload and report are written."""
    from builder.commands.progress import build_with_progress
    from builder.features import sources
    from builder.pipeline.budget import parse_budget
    from builder.pipeline.config import TaskConfig
    from builder.pipeline.targets import load_target
    from plada.corpus import Corpus
    from plada.signing import load_private_key

    key = load_private_key(_ensure_key(args))
    corpus = Corpus.open(args.data / "ref-v1")
    devices = sources.split_specs(args.devices)
    seeds = [int(s) for s in args.seeds.split(",")]
    progress = not args.no_progress
    cache = args.data / "cache" / "embeddings"

    def source(spec: str, backend: str) -> sources.FeatureSource:
        return sources.EncoderFeatures(spec, cache_root=cache, progress=progress, backend=backend)

    device_sources, teacher_sources = sources.task_sources(
        devices=devices,
        teachers=sources.split_specs(args.teacher_encoder),
        teacher_backend=args.teacher_backend,
        make=source,
    )
    rows: list[dict[str, Any]] = []
    for task_name in sources.split_specs(args.tasks):
        task = load_target(args.data / "targets" / task_name)
        for budget_text in sources.split_specs(args.budgets):
            reports = []
            for seed in seeds:
                config = TaskConfig(
                    budget=parse_budget(budget_text),
                    default_device=devices[0],
                    seed=seed,
                    num_folds=args.folds,
                    repeats=args.repeats,
                )
                result = build_with_progress(
                    corpus,
                    task,
                    teacher_sources=teacher_sources,
                    device_sources=device_sources,
                    signing_key=key,
                    config=config,
                    enabled=progress,
                )
                reports.append(result.record)
                if seed == seeds[0]:
                    _write_build(args.out, f"{task.name}-{budget_text}", result)
                _log_build(task.name, budget_text, seed, result.record)
            rows.append(_row(task.name, budget_text, seeds, reports))
            _write_summary(args.out, rows)
    return rows


def _write_build(out: Path, stem: str, result: BuildResult) -> None:
    from builder.report.write import write_report
    from plada.atomic import write_bytes_atomic

    payload_path = out / f"{stem}.plada"
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(payload_path, result.payload, mode=0o644)
    write_report(result.record.model_copy(update={"payload_file": str(payload_path)}), out / stem)


def _log_build(task: str, budget: str, seed: int, report: BuildReport) -> None:
    logging.info(
        "%s %s seed %d: %s keep %d, %d bytes, device %.3f, oracle %.3f (%.1f s)",
        task,
        budget,
        seed,
        report.strategy,
        report.num_indices,
        report.payload_bytes,
        report.device_accuracy,
        report.device_oracle_accuracy,
        report.total_s or 0.0,
    )


def _row(task: str, budget: str, seeds: list[int], records: list[BuildReport]) -> dict[str, Any]:
    reports = [r.to_json() for r in records]
    acc = np.array([r["device_accuracy"] for r in reports])
    bal = np.array([r["device_balanced_accuracy"] for r in reports])
    oracle = np.array([r["device_oracle_accuracy"] for r in reports])
    oracle_bal = np.array([r["device_oracle_balanced_accuracy"] for r in reports])
    first = reports[0]
    return {
        "task": task,
        "budget": budget,
        "seeds": seeds,
        "strategy": first["strategy"],
        "params": first["params"],
        "payload_bytes": first["payload_bytes"],
        "teacher_accuracy": first["teacher_accuracy"],
        "device_oracle_accuracy": float(oracle.mean()),
        "device_accuracy_mean": float(acc.mean()),
        "device_accuracy_std": float(acc.std()),
        "device_balanced_accuracy_mean": float(bal.mean()),
        "relative_mean": float((acc / oracle).mean()),
        "balanced_relative_mean": float((bal / oracle_bal).mean()),
        "per_seed": [
            {
                "seed": s,
                "strategy": r["strategy"],
                "params": r["params"],
                "num_indices": r["num_indices"],
                "payload_bytes": r["payload_bytes"],
                "device_accuracy": r["device_accuracy"],
                "device_balanced_accuracy": r["device_balanced_accuracy"],
                "device_oracle_accuracy": r["device_oracle_accuracy"],
                "teacher_encoder": r["teacher"]["encoder"],
                "teacher_accuracy": r["teacher_accuracy"],
                "val_accuracy": r["accuracy_estimate"],
                "total_s": r["total_s"],
                "peak_rss_mb": r["peak_rss_mb"],
            }
            for s, r in zip(seeds, reports, strict=True)
        ],
    }


def _write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    from plada.atomic import write_text_atomic

    write_text_atomic(out / "summary.json", json.dumps(rows, indent=2) + "\n", mode=0o644)
    write_text_atomic(out / "summary.md", _summary_markdown(rows), mode=0o644)


if __name__ == "__main__":
    sys.exit(main())
