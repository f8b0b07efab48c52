"""The demo's builder side: run CLI steps visibly, export encoders, build the task (cached)."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from builder.errors import BuilderError
from builder.report.model import BuildReport
from builder.report.write import load_report
from plada.atomic import write_text_atomic
from plada.encoders import parse_encoder_spec
from plada.files import sha256_file

REPO = Path(__file__).resolve().parents[2]


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_step(cmd: list[str], *, what: str) -> None:
    """Run a CLI step with its output (and progress bars) on the terminal; stop on failure."""
    log(f"{what}: {' '.join(str(c) for c in cmd[2:])}")
    started = time.monotonic()
    code = subprocess.run(cmd, cwd=REPO, check=False).returncode
    if code != 0:
        raise SystemExit(f"demo: {what} failed (exit {code})")
    log(f"{what}: done in {time.monotonic() - started:.1f} s")


def run_steps_together(steps: list[tuple[list[str], str]], logs: Path) -> None:
    """Run independent CLI steps side by side (each mostly one core's work), each one's output
    into its own log file under `logs`; stop, naming the step and its log, if any fails."""
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    running: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    for cmd, what in steps:
        log_path = logs / f"{what.replace(' ', '-')}.log"
        log(f"{what}: {' '.join(str(c) for c in cmd[2:])} (output: {log_path})")
        with log_path.open("wb") as out:
            running.append(
                (subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out), what, log_path)
            )
    finished = [(what, path, proc.wait()) for proc, what, path in running]
    for what, path, code in finished:
        if code != 0:
            tail = path.read_text("utf-8", errors="replace").splitlines()[-15:]
            print("\n".join(tail), file=sys.stderr)
            raise SystemExit(f"demo: {what} failed (exit {code}); its output: {path}")
    log(f"{', '.join(what for _, what in steps)}: done in {time.monotonic() - started:.1f} s")


def ensure_encoders(specs: list[str], out: Path, corpus: Path) -> None:
    """Export the encoders not exported yet, side by side (about a third faster than in turn)."""
    steps: list[tuple[list[str], str]] = []
    for spec in specs:
        if (out / f"{spec}.onnx").exists() and (out / f"{spec}.json").exists():
            log(f"encoder {spec}: cached")
            continue
        parsed = parse_encoder_spec(spec)
        cmd = [sys.executable, "-m", "builder", "export-encoder", "--model", parsed.model]
        cmd += ["--size", str(parsed.size), *(["--int8"] if parsed.int8 else []), "--out", str(out)]
        if parsed.int8:
            cmd += ["--calibration-corpus", str(corpus)]
        steps.append((cmd, f"export encoder {spec}"))
    if steps:
        run_steps_together(steps, out / "logs")


class TaskStamp(BaseModel):
    """What the cached payload was built from; any change builds it again."""

    model_config = ConfigDict(extra="forbid")

    data: str
    task: str
    budget: str
    devices: list[str]
    teachers: list[str]
    key: str

    @classmethod
    def read(cls, path: Path) -> TaskStamp | None:
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            return None  # missing, or from another version of the demo: build again


def ensure_task(
    args: argparse.Namespace, specs: list[str], key: Path, *, task: str | None = None
) -> tuple[Path, BuildReport]:
    """The payload and report of `task` (default args.task), built once and reused."""
    task = task or args.task
    out: Path = args.out
    payload = out / f"{task}-{args.budget}.plada"
    report_dir = out / f"{task}-{args.budget}-report"
    stamp = TaskStamp(
        data=_data_stamp(args.data),
        task=task,
        budget=args.budget,
        devices=specs,
        teachers=specs,
        key=sha256_file(key),
    )
    stamp_path = out / f"task-stamp-{task}.json"
    cached = payload.exists() and (report_dir / "report.json").exists()
    if cached and TaskStamp.read(stamp_path) == stamp:
        log(f"task {payload.name}: cached")
    else:
        cmd = [sys.executable, "-m", "builder", "task", "--corpus", str(args.data / "ref-v1")]
        cmd += ["--target", str(args.data / "targets" / task), "--budget", args.budget]
        cmd += ["--auto", "--key", str(key), "--out", str(payload), "--report", str(report_dir)]
        cmd += ["--devices", ",".join(specs), "--encoder-dir", str(out / "encoders")]
        # the fleet's own encoders teach (the builder keeps the better one on the train folds):
        # the corpus is embedded once per device encoder, never with a third, teacher-only one
        cmd += ["--teacher-encoder", ",".join(specs)]
        run_step(cmd, what=f"build task {task} at {args.budget}")
        write_text_atomic(stamp_path, stamp.model_dump_json())
    try:
        return payload, load_report(report_dir)
    except BuilderError as exc:
        raise SystemExit(f"demo: {exc}") from exc


def _data_stamp(data: Path) -> str:
    info = data / "build-info.json"
    body = info.read_bytes() if info.exists() else str(data.resolve()).encode()
    return hashlib.sha256(body).hexdigest()[:16]


def write_json(path: Path, obj: object) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
