"""Corpus scale: a derived corpus of 100k, 300k and 1M images through the real CLIs.

    .venv/bin/python -m bench.corpus_scale --data data --work /work/scale-data \\
        --encoder-dir build/encoders --sizes 100000,300000,1000000

For each size N, every stage is one child process under `/usr/bin/time` (wall, user, system,
peak RSS; the 1-minute load average at its start), in this order:

- build    `plada corpus build --derive DATA/ref-v1 --derive-count N` (plada/corpus/derived.py:
           image i = base image i mod 83,480 cropped, mirrored, turned and rescaled by
           parameters from `default_rng([seed, i])`)
- verify   `plada corpus verify` (every stored image's sha256)
- reads    this module's `--reads DIR`: open, then seeded random `image()` and `read_bytes`
- embed    `plada-build embed --encoder lite0-64-int8` into an emptied cache (ONNX Runtime)
- builder  `plada-build task` on the fashion target with one teacher on the same encoder, a
           fixed strategy (low-energy) and a keep count of 20,000: scoring + selection over all
           N reference features, validation, simulation, leakage; task images come from the
           image cache (an unmeasured first build fills it)
- apply    `plada-agent apply` of that signed payload on a device config with an empty feature
           cache (cold: all 20,000 embedded on demand), then again (warm: the rows it stored)

Then linear fits of the measured points are evaluated at ImageNet-21K's 14.2M images. Results
merge into `--out` by size and stage, so a size or a stage can be re-run alone (`--stages`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.profiles import dump_toml
from bench._common import ROOT, log, write_json
from bench.runlog import git_commit, machine_info
from bench.schema.corpus_scale import CorpusScaleResults

STAGES = ("build", "verify", "reads", "embed", "builder", "apply")
DEFAULT_SIZES = (100_000, 300_000, 1_000_000)
IMAGENET_21K = 14_200_000
ENCODER = "lite0-64-int8"
TASK = "fashion"
STRATEGY = "low-energy"
KEPT = 20_000
NUM_READS = 5_000
_PY = sys.executable


def _time(cmd: Sequence[str], *, stdout: Path | None = None) -> dict[str, Any]:
    """Run `cmd` (cwd: the repository, so `python -m` imports this checkout) under
    /usr/bin/time; its measurements plus, when given, its stdout saved to `stdout`."""
    load = round(os.getloadavg()[0], 2)
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        full = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", tf.name, *cmd]
        done = subprocess.run(full, cwd=ROOT, capture_output=True, text=True, check=False)
        measured = Path(tf.name).read_text(encoding="ascii").split()[-4:]
    if stdout is not None:
        stdout.write_text(done.stdout, encoding="utf-8")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    wall, user, sys_s, rss_kb = (float(v) for v in measured)
    return {
        "command": " ".join(str(c) for c in cmd),
        "wall_s": wall,
        "user_s": user,
        "sys_s": sys_s,
        "peak_rss_mb": round(rss_kb / 1024, 1),
        "loadavg_1m": load,
        "git_commit": git_commit(),
        "stdout": done.stdout,
    }


def _json_out(measured: dict[str, Any]) -> Any:
    return json.loads(measured.pop("stdout"))


def _agent_toml(work: Path, corpus: Path, encoder: Path) -> str:
    return dump_toml(
        {
            "device_id": "bench-scale",
            "device_class": "bench",
            "corpus": {"path": corpus},
            "encoder": {"file": encoder, "threads": 2},
            "state": {"dir": work / "state"},
            "cache": {"dir": work / "cache"},
            "trust": {"public_keys": [work.parent / "keys" / "public.pem"]},
        }
    )


class Scale:
    """The stages of one run (paths and settings shared by every size)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.data = Path(args.data).resolve()
        self.work = Path(args.work).resolve()
        self.encoder_dir = Path(args.encoder_dir).resolve()
        self.seed = int(args.seed)
        self.base = self.data / "ref-v1"
        self.emb = self.work / "emb"
        self.keys = self.work / "keys"

    def corpus_dir(self, n: int) -> Path:
        return self.work / f"derived-{n}"

    def build(self, n: int) -> dict[str, Any]:
        out = self.corpus_dir(n)
        cmd = [_PY, "-m", "plada", "corpus", "build", "--out", str(out), "--derive", str(self.base)]
        cmd += ["--derive-count", str(n), "--derive-seed", str(self.seed), "--force", "--json"]
        m = _time(cmd)
        info = _json_out(m)
        return {
            **m,
            "fingerprint": info["fingerprint"],
            "bytes_on_disk": int(info["bytes_on_disk"]),
            "images_per_s": round(n / m["wall_s"], 1),
        }

    def verify(self, n: int) -> dict[str, Any]:
        m = _time([_PY, "-m", "plada", "corpus", "verify", str(self.corpus_dir(n)), "--json"])
        report = _json_out(m)
        return {**m, "ok": bool(report["ok"]), "images_per_s": round(n / m["wall_s"], 1)}

    def reads(self, n: int) -> dict[str, Any]:
        cmd = [_PY, "-m", "bench.corpus_scale", "--reads", str(self.corpus_dir(n))]
        m = _time([*cmd, "--seed", str(self.seed)])
        return {**m, **_json_out(m)}

    def embed(self, n: int) -> dict[str, Any]:
        corpus = self.corpus_dir(n)
        fingerprint = json.loads((corpus / "corpus.json").read_text(encoding="utf-8"))
        shutil.rmtree(self.emb / fingerprint["fingerprint"][:16], ignore_errors=True)  # cold
        cmd = [_PY, "-m", "builder", "embed", "--corpus", str(corpus), "--encoder", ENCODER]
        cmd += ["--encoder-dir", str(self.encoder_dir), "--cache", str(self.emb)]
        m = _time([*cmd, "--no-progress", "--json"])
        done = _json_out(m)
        features = Path(done["cache_dir"]) / "features.npy"
        return {
            **m,
            "images_per_s": round(n / m["wall_s"], 1),
            "feature_bytes": features.stat().st_size,
        }

    def _task_cmd(self, n: int) -> list[str]:
        if not (self.keys / "private.pem").exists():
            subprocess.run(
                [_PY, "-m", "plada", "keys", "generate", "--out", str(self.keys)],
                cwd=ROOT, check=True, capture_output=True,
            )  # fmt: skip
        out = self.work / f"task-{n}"
        cmd = [_PY, "-m", "builder", "task", "--corpus", str(self.corpus_dir(n))]
        cmd += [
            "--target",
            str(self.data / "targets" / TASK),
            "--key",
            str(self.keys / "private.pem"),
        ]
        cmd += ["--out", str(out / "payload.plada"), "--report", str(out / "report")]
        cmd += ["--budget", str(KEPT), "--strategy", STRATEGY, "--teacher-encoder", ENCODER]
        cmd += ["--devices", ENCODER, "--teacher-search", "off", "--no-teacher-augment"]
        cmd += ["--views", "off", "--encoder-dir", str(self.encoder_dir), "--cache", str(self.emb)]
        return [*cmd, "--no-progress", "--json"]

    def builder(self, n: int) -> dict[str, Any]:
        if not (self.emb / "images").exists():  # the task's own images, embedded once
            log("builder: warm-up build (fills the task-image cache; not measured)")
            _time(self._task_cmd(n))
        m = _time(self._task_cmd(n))
        done = _json_out(m)
        report = json.loads(
            (self.work / f"task-{n}" / "report" / "report.json").read_text(encoding="utf-8")
        )
        return {
            **m,
            "kept": int(done["num_indices"]),
            "payload_bytes": int(done["payload_bytes"]),
            "device_accuracy": done.get("device_accuracy"),
            "stage_seconds": {k: round(float(v), 2) for k, v in report["timings_s"].items()},
        }

    def apply(self, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
        agent = self.work / f"agent-{n}"
        shutil.rmtree(agent, ignore_errors=True)  # an empty feature cache: the cold apply
        agent.mkdir(parents=True)
        encoder = self.encoder_dir / f"{ENCODER}.onnx"
        config = agent / "agent.toml"
        config.write_text(_agent_toml(agent, self.corpus_dir(n), encoder), encoding="utf-8")
        payload = self.work / f"task-{n}" / "payload.plada"
        cmd = [_PY, "-m", "bench._rss", "-m", "agent", "apply", str(payload)]
        cmd += ["--config", str(config), "--json", "--force"]
        cold = self._apply_row(_time(cmd))
        warm = min(
            (self._apply_row(_time(cmd)) for _ in range(2)),  # shared cores: the less disturbed
            key=lambda row: float(row["payload_to_model_s"]),
        )
        return cold, warm

    @staticmethod
    def _apply_row(m: dict[str, Any]) -> dict[str, Any]:
        done = _json_out(m)
        applied = done["applied"]
        return {
            **m,
            "kept": int(applied["num_indices"]),
            "features_computed": int(applied["features_computed"]),
            "payload_to_model_s": float(applied["total_seconds"]),
            "train_s": float(applied["train_seconds"]),
            "rss_mb_of_process": round(float(done["peak_rss_mb"]), 1),
        }


def bench_reads(path: Path, *, seed: int, num_reads: int = NUM_READS) -> dict[str, Any]:
    """Open the corpus, then seeded uniform random reads (decode, and stored bytes only)."""
    from plada.corpus import Corpus

    start = time.perf_counter()
    corpus = Corpus.open(path)
    open_s = time.perf_counter() - start
    indices = np.random.default_rng(seed).integers(0, len(corpus), size=num_reads).tolist()
    start = time.perf_counter()
    for i in indices:
        corpus.image(i)
    images_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in indices:
        corpus.read_bytes(i)
    bytes_s = time.perf_counter() - start
    return {
        "num_reads": num_reads,
        "open_s": round(open_s, 3),
        "images_per_s": round(num_reads / images_s, 1),
        "bytes_per_s": round(num_reads / bytes_s, 1),
    }


def fit(sizes: Sequence[int], values: Sequence[float], *, what: str, unit: str) -> dict[str, Any]:
    """Least-squares line through (size, value), evaluated at ImageNet-21K's size."""
    slope, intercept = np.polyfit(np.asarray(sizes, float), np.asarray(values, float), 1)
    return {
        "what": what,
        "unit": unit,
        "slope": float(slope),
        "intercept": float(intercept),
        "at_images": IMAGENET_21K,
        "value": float(slope * IMAGENET_21K + intercept),
        "points": len(sizes),
    }


_FITS = (  # (what, unit, stage, field, scale)
    ("corpus on disk", "GB", "build", "bytes_on_disk", 1e-9),
    ("corpus build", "s", "build", "wall_s", 1.0),
    ("verify", "s", "verify", "wall_s", 1.0),
    ("embedding (lite0-64-int8)", "s", "embed", "wall_s", 1.0),
    ("features on disk (float32)", "GB", "embed", "feature_bytes", 1e-9),
    ("builder (score + select + validate + simulate + leakage)", "s", "builder", "wall_s", 1.0),
    ("builder peak RSS", "MB", "builder", "peak_rss_mb", 1.0),
    ("agent apply, warm", "s", "apply_warm", "payload_to_model_s", 1.0),
    ("agent apply, warm, peak RSS", "MB", "apply_warm", "peak_rss_mb", 1.0),
)


def extrapolate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    fits = []
    for what, unit, stage, field, scale in _FITS:
        points = [(r["images"], r[stage][field] * scale) for r in rows if r.get(stage)]
        if len(points) >= 2:
            sizes, values = zip(*points, strict=True)
            fits.append(fit(sizes, values, what=what, unit=unit))
    return fits


def _merge(out: Path, n: int, stage_rows: dict[str, Any]) -> dict[str, Any]:
    """Read `out`, put this size's new stage results in, write it back (validated)."""
    doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8")) if out.exists() else {}
    rows = {r["images"]: r for r in doc.get("sizes", [])}
    rows.setdefault(n, {"images": n}).update(stage_rows)
    doc["sizes"] = [rows[k] for k in sorted(rows)]
    return doc


def run(args: argparse.Namespace) -> int:
    scale = Scale(args)
    sizes = [int(s) for s in args.sizes.split(",")]
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    for stage in stages:
        if stage not in STAGES:
            raise SystemExit(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    out = Path(args.out)
    machine = machine_info()
    base = json.loads((scale.base / "corpus.json").read_text(encoding="utf-8"))
    for n in sizes:
        for stage in STAGES:
            if stage not in stages:
                continue
            log(f"corpus_scale {n:,}: {stage}")
            row: dict[str, Any]
            if stage == "apply":
                cold, warm = scale.apply(n)
                row = {"apply_cold": cold, "apply_warm": warm}
            else:
                row = {stage: getattr(scale, stage)(n)}
            doc = _merge(out, n, row)
            doc.update(
                date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                git_commit=git_commit(),
                machine={**machine, "loadavg_end": round(os.getloadavg()[0], 1)},
                settings={
                    "base_corpus": "ref-v1",
                    "base_fingerprint": base["fingerprint"],
                    "seed": scale.seed,
                    "encoder": ENCODER,
                    "feature_dim": 1280,
                    "task": TASK,
                    "strategy": STRATEGY,
                    "kept": KEPT,
                },
            )
            doc["extrapolation"] = extrapolate(doc["sizes"])
            CorpusScaleResults.model_validate(doc)  # never write what the renderer cannot read
            write_json(out, doc)
            log(f"corpus_scale {n:,}: {stage} done: {json.dumps(_brief(row))}")
    return 0


def _brief(row: dict[str, Any]) -> dict[str, Any]:
    return {
        stage: {k: v for k, v in fields.items() if k in ("wall_s", "peak_rss_mb")}
        for stage, fields in row.items()
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.corpus_scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="`make data` output")
    parser.add_argument(
        "--work", type=Path, default=ROOT / "build" / "corpus-scale", help="corpora and caches"
    )
    parser.add_argument(
        "--encoder-dir", type=Path, default=ROOT / "build" / "encoders", help="exported encoders"
    )
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the derived corpus")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "corpus_scale.json"
    )
    parser.add_argument("--reads", type=Path, default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.reads is not None:  # the child of the reads stage
        print(json.dumps(bench_reads(args.reads, seed=args.seed)))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
