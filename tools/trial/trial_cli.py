"""``python -m tools.trial`` (``make trial``): a field trial of the fleet over emulated links.

    sudo .venv/bin/python -m tools.trial [--fleet lora:3,nbiot:2,ltem:3,satellite:2]
        [--classes raspberry-pi-4,x86-dev] [--task fashion] [--budget 2KiB] [--readme]

Devices of several classes on several link profiles (tools/trial/profiles.toml), real
``plada-agent run`` daemons in network namespaces, a real mosquitto, one task published, then the
same task as images and as head weights over the same links. Writes ``<out>/<name>.json``,
``.sqlite``, ``.md`` and three PNG plots; ``--readme`` puts the summary into README.md between the
``trial`` markers. ``--tiny`` runs the tests' tiny device instead of the real data (seconds).

This is a tool, not a ``plada-build`` command: it needs root (namespaces, tc, nft) and this
checkout's tools/ package (the link emulation), which the installed builder does not ship.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from plada.atomic import write_text_atomic
from tools.trial.data_kit import DataKit
from tools.trial.errors import TrialError
from tools.trial.fleet_plan import DEFAULT_FLEET, plan_fleet
from tools.trial.kit import TaskKit, TinyKit
from tools.trial.orchestrator import (
    DEFAULT_STAGES,
    WARM_MODES,
    TrialSettings,
    default_stages,
    run_trial,
)
from tools.trial.plots import write_plots
from tools.trial.profiles import DEFAULT_PROFILES, load_profiles
from tools.trial.report_files import summary_markdown, write_json, write_markdown, write_sqlite
from tools.trial.report_model import TrialReport

START, END = "<!-- trial:start -->", "<!-- trial:end -->"
DATA_CLASSES = "raspberry-pi-4,x86-dev"  # two encoders: Lite0 int8 at 64 px, Lite1 at 96 px


def save_report(report: TrialReport, out: Path, name: str) -> dict[str, Path]:
    """Every file of the report; kind -> path."""
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, out, name)
    paths = {
        "json": out / f"{name}.json",
        "sqlite": out / f"{name}.sqlite",
        "md": out / f"{name}.md",
    }
    write_json(report, paths["json"])
    write_sqlite(report, paths["sqlite"])
    write_markdown(report, paths["md"], plots=plots)
    for stage in report.stages:  # the rollout records beside the report, as the product writes them
        if stage.rollout is not None:
            paths[f"rollout {stage.kind}"] = out / f"{name}-rollout-{stage.kind}.json"
            stage.rollout.save(paths[f"rollout {stage.kind}"])
    return paths | {title: out / file for title, file in plots.items()}


def update_readme(readme: Path, report: TrialReport, out: Path, name: str) -> None:
    """The summary between the trial markers, its links relative to the README."""
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise TrialError(f"{readme} has no {START} ... {END} markers")
    rel = out.resolve().relative_to(readme.resolve().parent)
    plots = {
        "time to ready per profile": f"{rel}/{name}_ready.png",
        "bytes on the wire per device": f"{rel}/{name}_bytes.png",
        "accuracy per device class": f"{rel}/{name}_accuracy.png",
    }
    body = summary_markdown(report, plots=plots)
    body += (
        f"\n\nEvery device, stage and scraped metric: `{rel}/{name}.md` (and `.json`, `.sqlite`)."
    )
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(readme, f"{head}{START}\n{body}\n{END}{tail}")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.trial",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=Path("data"), help="`make data` folder")
    parser.add_argument("--work", type=Path, default=Path("build/trial"), help="work folder")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="report folder")
    parser.add_argument("--name", default="trial", help="report file names")
    parser.add_argument("--fleet", default=DEFAULT_FLEET, help="profile:count,...")
    parser.add_argument(
        "--classes", help=f"device classes (default {DATA_CLASSES}; with --tiny: tiny)"
    )
    parser.add_argument("--task", default="fashion", help="target under DATA/targets")
    parser.add_argument("--budget", default="2KiB", help="task payload budget")
    parser.add_argument("--probe-per-class", type=int, default=20, help="test images per class")
    parser.add_argument("--profiles", type=Path, default=DEFAULT_PROFILES)
    parser.add_argument("--stage-timeout", type=float, default=300.0, help="s per stage")
    parser.add_argument("--warm", choices=WARM_MODES, default="selection")
    parser.add_argument("--stages", default=",".join(DEFAULT_STAGES), help="in order")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny device, not data/")
    parser.add_argument("--readme", type=Path, nargs="?", const=Path("README.md"))
    return parser.parse_args(argv)


def _kit(args: argparse.Namespace, scratch: Path) -> TaskKit:
    default = "tiny" if args.tiny else DATA_CLASSES
    classes = tuple(c for c in (args.classes or default).split(",") if c)
    if args.tiny:
        return TinyKit(scratch / "tiny", classes=classes)
    return DataKit(
        data=args.data,
        work=args.work,
        task=args.task,
        budget=args.budget,
        classes=classes,
        probe_per_class=args.probe_per_class,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="plada-trial-") as tmp:
            kit = _kit(args, Path(tmp))
            fleet = plan_fleet(args.fleet, kit.classes, load_profiles(args.profiles))
            settings = TrialSettings(stage_timeout_s=args.stage_timeout, warm=args.warm)
            folder = Path(tmp) / "run" if args.tiny else args.work / "run"
            stages = default_stages([s for s in args.stages.split(",") if s])
            report = run_trial(kit, fleet, folder=folder, stages=stages, settings=settings)
        paths = save_report(report, args.out, args.name)
        if args.readme:
            update_readme(args.readme, report, args.out, args.name)
    except TrialError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return os.EX_SOFTWARE
    print(summary_markdown(report, plots={}))
    print("wrote " + ", ".join(str(p) for p in paths.values()), file=sys.stderr)
    return 0
