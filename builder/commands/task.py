"""`plada-build task`: a labelled target folder -> a signed payload and a report folder.

    plada-build task --corpus data/ref-v1 --target data/targets/fashion --budget 2KiB --auto \
        --key keys/private.pem --out build/fashion.plada --report build/fashion-report
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from builder.commands.embed import DEFAULT_CACHE  # one cache: `embed` fills what builds read
from plada.encoders import DEFAULT_DEVICE_ENCODER

if TYPE_CHECKING:
    from builder.commands.fleet_args import FleetChoice
    from builder.pipeline.budget import Budget
    from builder.pipeline.config import TaskConfig
    from builder.report.model import BuildReport

# Measured on ref-v1 (README "Builder results"): a Lite1-96 teacher is best on fashion and
# clipart, a teacher on the device's own lite0-64-int8 features is far better on digits; with both
# listed, each build keeps the teacher whose choice validates best on the train folds.
DEFAULT_TEACHER_ENCODER = "lite1-96,lite0-64-int8"
EXIT_ERROR = 1


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "task",
        help="build a signed task payload (and its report) from a labelled ImageFolder target",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_task_arguments(parser)
    parser.set_defaults(func=handler)


def add_task_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag of `plada-build task`, in argument groups so that --help reads by topic."""
    _add_io_arguments(parser)
    _add_selection_arguments(parser)
    _add_fleet_arguments(parser)
    _add_teacher_arguments(parser)
    _add_view_arguments(parser)
    _add_validation_arguments(parser)
    _add_feature_arguments(parser)
    _add_payload_arguments(parser)


def _add_io_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inputs and outputs")
    group.add_argument("--corpus", type=Path, required=True, help="reference corpus folder")
    group.add_argument(
        "--target", type=Path, required=True, help="target task: DIR/{train,test}/<class>/<image>"
    )
    group.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    group.add_argument("--out", type=Path, required=True, help="payload file to write")
    group.add_argument("--report", type=Path, required=True, help="report folder to write")


def _add_selection_arguments(parser: argparse.ArgumentParser) -> None:
    from builder.pipeline.select import STRATEGIES

    group = parser.add_argument_group("selection and budget")
    group.add_argument(
        "--budget",
        required=True,
        help="payload budget: bytes (2KiB, 8kB, 1500B: a cap), a keep ratio (1%%, 0.01) or a "
        "keep count (834)",
    )
    mode = group.add_mutually_exclusive_group()
    mode.add_argument(
        "--auto",
        action="store_true",
        help="choose strategy, parameters and keep count on k-fold splits of train (default)",
    )
    mode.add_argument("--strategy", choices=STRATEGIES, help="use this strategy only")
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="strategy parameter, repeatable (safety-net: s=0.5, alpha=0.5)",
    )
    group.add_argument("--temperature", type=float, default=1.0, help="energy temperature")


def _add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    # builder.commands.fleet_args turns these into the validated classes and the objective.
    group = parser.add_argument_group("device classes (fleet)")
    group.add_argument(
        "--devices",
        default=None,
        help=f"device classes (encoder specs or device-class profile names) to simulate and "
        f"validate, comma-separated; the first is the default device class (the payload's "
        f"accuracy estimate); with several, --auto chooses for all of them (--fleet-objective) "
        f"(default {DEFAULT_DEVICE_ENCODER}, or the classes of --fleet-weights / --fleet-status)",
    )
    group.add_argument(
        "--fleet-objective",
        choices=("worst", "weighted", "default"),
        default=None,
        help="several device classes: maximise the worst class's validated ratio to its own "
        "oracle (worst, the default), the weighted mean of the ratios (weighted: "
        "--fleet-weights, or the device counts of --fleet-status), or the default class's "
        "accuracy alone as before fleets (default: the others are validated for the report)",
    )
    group.add_argument(
        "--fleet-weights",
        default=None,
        metavar="CLASS=W,...",
        help="per-class weights of the weighted objective, e.g. lite0-64-int8=8,lite1-96=2 "
        "(classes: encoder specs or device-class profile names)",
    )
    group.add_argument(
        "--fleet-status",
        default=None,
        metavar="URL|FILE",
        help="take the device classes and their device counts (the weights) from a live fleet "
        "(mqtt[s]://host:port: its retained statuses; credentials from $PLADA_MQTT_USERNAME / "
        "$PLADA_MQTT_PASSWORD) or a file written by `plada-build fleet status --json`",
    )
    group.add_argument(
        "--fleet-base-topic", default="plada", help="--fleet-status URL: the fleet's topic prefix"
    )
    group.add_argument(
        "--profiles",
        type=Path,
        default=Path("firmware_configs"),
        help="device-class profiles (<class>.toml with a [device] table naming its encoder) "
        "that map fleet class names to encoders (default firmware_configs)",
    )


def _add_teacher_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("teachers")
    group.add_argument(
        "--teacher-encoder",
        default=DEFAULT_TEACHER_ENCODER,
        help=f"teacher encoder spec(s), comma-separated: with several, the build whose choice "
        f"validates best on the train folds is kept (default {DEFAULT_TEACHER_ENCODER})",
    )
    group.add_argument(
        "--teacher-backend",
        choices=("onnx", "torch", "auto"),
        default="onnx",
        help="run the teacher encoder on ONNX Runtime (default: an fp32 export, same features as "
        "torch to 1e-4 and measured 10x+ faster on this shared CPU) or PyTorch",
    )
    group.add_argument(
        "--teacher-search",
        choices=("auto", "off"),
        default="off",
        help="search teacher candidates on k-fold splits of train: the teacher encoders' "
        "features together, a small MLP, augmented train images; the winner is validated "
        "beside the plain per-encoder teachers (default off: measured to cost 50-210 s per "
        "warm build without yet moving a device's accuracy)",
    )
    group.add_argument(
        "--no-teacher-augment",
        action="store_true",
        help="teacher search without augmented train images (they are embedded once per build)",
    )
    group.add_argument(
        "--fine-tune",
        action="store_true",
        help="also fine-tune the first teacher encoder on the train split (torch, CPU) and "
        "re-embed the corpus with it as one more teacher; slow (the report times it)",
    )


def _add_view_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("views")
    group.add_argument(
        "--views",
        choices=("auto", "off"),
        default="auto",
        help="--auto: propose views (how devices look at the kept reference images) from the "
        "target's train images and choose one, or none, on the train folds (default auto; "
        "each proposed view embeds the corpus once more per encoder, cached)",
    )
    group.add_argument(
        "--max-views",
        type=int,
        default=1,
        help="at most this many proposed views (auto; default 1: the full proposal, 2 adds its "
        "geometry alone at about twice the validation time)",
    )


def _add_validation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("validation")
    group.add_argument("--folds", type=int, default=3, help="validation folds (auto)")
    group.add_argument("--repeats", type=int, default=1, help="repeats of the k-fold split")
    group.add_argument(
        "--finalists",
        type=int,
        default=4,
        help="the best candidates of the first round validated on more splits (0: none)",
    )
    group.add_argument(
        "--finalist-repeats",
        type=int,
        default=2,
        help="extra k-fold splits for the finalists before the choice (steadier choice)",
    )
    group.add_argument("--seed", type=int, default=0, help="seed: folds, random, head")
    group.add_argument(
        "--leakage-threshold", type=float, default=0.99, help="cosine above which to flag"
    )


def _add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("features")
    group.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="embedding cache root folder"
    )
    group.add_argument(
        "--encoder-dir", type=Path, default=None, help="folder of exported device encoders"
    )
    group.add_argument("--batch-size", type=int, default=256, help="embedding batch size")


def _add_payload_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("payload and summary")
    group.add_argument("--task-name", default=None, help="payload task name (default: folder)")
    group.add_argument("--version", type=int, default=1, help="payload version (>= 1)")
    group.add_argument("--note", default="", help="free text stored in the payload provenance")
    group.add_argument("--no-progress", action="store_true", help="no progress bars")
    group.add_argument("--json", action="store_true", help="print the summary as JSON")


def _parse_params(items: list[str]) -> dict[str, str | int | float | bool]:
    from builder.errors import BuilderError

    params: dict[str, str | int | float | bool] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise BuilderError(f"--param {item!r}: expected NAME=VALUE")
        value: str | int | float | bool
        try:
            value = int(raw)
        except ValueError:
            try:
                value = float(raw)
            except ValueError:
                value = {"true": True, "false": False}.get(raw.lower(), raw)
        params[name] = value
    return params


def summary(report: BuildReport, *, out: Path, report_dir: Path) -> dict[str, Any]:
    from builder.report.model import KEY_NUMBERS

    data = report.to_json()
    out_summary = {k: data[k] for k in ("task", *KEY_NUMBERS, "total_s", "peak_rss_mb")}
    out_summary["payload"] = str(out)
    out_summary["report"] = str(report_dir)
    out_summary["devices"] = data["devices"]
    return out_summary


def check_outputs(*paths: Path) -> None:
    """Fail before any work if an output cannot be written: each path's folder is created if
    missing and must accept a new file (a build takes minutes; losing it at the end hurts)."""
    import tempfile

    from builder.errors import BuilderError

    for path in paths:
        folder = Path(path).parent
        if Path(path).is_dir():
            raise BuilderError(f"cannot write {path}: it is a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as exc:
            raise BuilderError(f"cannot write {path}: {exc.strerror} ({folder})") from exc


def _config(args: argparse.Namespace, *, budget: Budget, fleet: FleetChoice) -> TaskConfig:
    from builder.pipeline.config import TaskConfig

    return TaskConfig(
        budget=budget,
        strategy=args.strategy,
        params=_parse_params(args.param),
        default_device=fleet.devices[0],
        temperature=args.temperature,
        num_folds=args.folds,
        repeats=args.repeats,
        finalists=args.finalists,
        finalist_repeats=args.finalist_repeats,
        objective=fleet.objective,
        fleet_source=fleet.source,
        fleet_counts=fleet.counts,
        seed=args.seed,
        leakage_threshold=args.leakage_threshold,
        version=args.version,
        task_name=args.task_name,
        note=args.note,
        views=args.views == "auto" and args.strategy is None,
        max_views=args.max_views,
        teacher_search=args.teacher_search == "auto",
        teacher_augment=not args.no_teacher_augment,
        fine_tune=args.fine_tune,
    )


def run_task(args: argparse.Namespace) -> BuildReport:
    """Build, write the payload and the report; returns the report."""
    from builder.commands.fleet_args import fleet_choice
    from builder.commands.progress import build_with_progress
    from builder.features import sources
    from builder.pipeline.budget import parse_budget
    from builder.pipeline.targets import load_target
    from builder.report.write import write_report
    from plada.atomic import write_bytes_atomic
    from plada.corpus import Corpus
    from plada.signing import load_private_key

    check_outputs(args.out, args.report / "report.json")
    budget = parse_budget(args.budget)
    key = load_private_key(args.key)
    corpus = Corpus.open(args.corpus)
    task = load_target(args.target)
    fleet = fleet_choice(args)
    devices = fleet.devices
    progress = not args.no_progress

    def source(spec: str, backend: str) -> sources.FeatureSource:
        return sources.EncoderFeatures(
            spec,
            cache_root=args.cache,
            encoder_dir=args.encoder_dir,
            batch_size=args.batch_size,
            progress=progress,
            backend=backend,
        )

    device_sources, teacher_sources = sources.task_sources(
        devices=devices,
        teachers=sources.split_specs(args.teacher_encoder),
        teacher_backend=args.teacher_backend,
        make=source,
    )
    config = _config(args, budget=budget, fleet=fleet)
    result = build_with_progress(
        corpus,
        task,
        teacher_sources=teacher_sources,
        device_sources=device_sources,
        signing_key=key,
        config=config,
        enabled=progress,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(Path(args.out), result.payload, mode=0o644)
    report = result.record.model_copy(update={"payload_file": str(args.out)})
    write_report(report, args.report)
    return report


def handler(args: argparse.Namespace) -> int:
    from builder.errors import BuilderError
    from plada.errors import PladaError

    try:
        report = run_task(args)
    except (BuilderError, PladaError) as exc:
        print(f"plada-build task: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(summary(report, out=args.out, report_dir=args.report), indent=2))
    else:
        dev = report.devices[report.default_device or ""]
        print(
            f"{report.task}: {report.strategy} {report.params} "
            f"keep {report.num_indices} -> {args.out} ({report.payload_bytes} bytes)\n"
            f"  teacher {100 * report.teacher_accuracy:.1f} %, device "
            f"{report.default_device} {100 * dev.accuracy:.1f} % "
            f"(oracle {100 * dev.oracle_accuracy:.1f} %), leakage flags "
            f"{report.leakage_flags}; report in {args.report}"
        )
        if report.fleet is not None:
            print(fleet_line(report))
    return 0


def fleet_line(report: BuildReport) -> str:
    """Builds validating several classes: each class's validated ratio, the worst one first."""
    fleet = report.fleet
    if fleet is None:
        return ""
    ratios = ", ".join(
        f"{name} {100 * c.val_ratio:.0f} %"
        for name, c in sorted(fleet.classes.items(), key=lambda kv: kv[1].val_ratio)
    )
    return f"  chosen for {fleet.description}; validated ratios: {ratios}"
