"""Agent benchmarks -> bench/results/agent.json.

    python -m bench.agent --data data/small --out bench/results/agent.json

1. Encoder throughput (images/s, model only, batch 32, 2 threads): ORT fp32, ORT int8, TFLite
   (if a .tflite export exists), torch eager (builder) as the baseline.
2. Warm-cache throughput (decode + preprocess + encode + write) with the device encoder.
3. Payload -> stored model for 5,000 kept images with a warm cache, per head backend, run as the
   real CLI (`plada-agent apply --json`) in a child process: in-process seconds, wall seconds and
   the child's peak RSS. The corpus is the small reference corpus plus mirrored copies (>= 5,000).
4. Cost of the float16 feature cache: test accuracy of heads trained on float32 vs float16-rounded
   features of each target's train split.

    python -m bench.agent --check CONFIG PAYLOAD TEST_DIR

applies a builder payload on a device config and prints the device's accuracy on the target's
test split (compare with the builder report's simulated device accuracy).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from agent.config import load_config
from agent.features import embed_images, load_extractor
from agent.pipeline import open_corpus, open_feature_cache
from agent.profiles import dump_toml
from plada.corpus import Corpus, CorpusSource, GeneratorSource, ImageSource, build_corpus
from plada.head import HeadHyperParams, accuracy, train_head
from plada.payload import CorpusRef, Provenance, TaskPayload, encode_payload
from plada.preprocess import preprocess_batch
from plada.signing import generate_keypair, load_private_key

ROOT = Path(__file__).resolve().parents[1]
_VENV_BIN = ROOT / ".venv" / "bin"
_ORT_VENV_PY = ROOT / ".venv-ort-training" / "bin" / "python"
KEPT = 5000


def _export(enc_dir: Path, *, int8: bool, corpus: Path) -> Path:
    name = "lite0-64-int8" if int8 else "lite0-64"
    path = enc_dir / f"{name}.onnx"
    if not path.exists():
        cmd = [str(_VENV_BIN / "plada-build"), "export-encoder", "--model", "lite0", "--size", "64"]
        cmd += ["--out", str(enc_dir)]
        if int8:
            cmd += ["--int8", "--calibration-corpus", str(corpus)]
        subprocess.run(cmd, check=True)
    return path


def _throughput(embed: Any, batch: np.ndarray, *, repeats: int = 5) -> float:
    embed(batch[:32])  # warm-up (session init, allocations)
    best = float("inf")
    for _ in range(repeats):  # best of: other work on a shared box only ever slows a run
        start = time.perf_counter()
        for lo in range(0, len(batch), 32):
            embed(batch[lo : lo + 32])
        best = min(best, time.perf_counter() - start)
    return len(batch) / best


def bench_encoders(corpus: Corpus, paths: dict[str, Path], *, n: int = 256) -> dict[str, Any]:
    batch = preprocess_batch(corpus.images(list(range(n))), size=64)  # (n, 3, 64, 64)
    out: dict[str, Any] = {}
    for name, path in paths.items():
        backend = "tflite" if path.suffix == ".tflite" else "onnxruntime"
        extractor = load_extractor(path, backend=backend, threads=2)
        out[name] = round(_throughput(extractor.embed, batch), 1)
    try:
        from builder.encoders.load import load_encoder

        torch_encoder = load_encoder("lite0-64", backend="torch", threads=2)
        out["torch_eager"] = round(_throughput(torch_encoder.embed, batch), 1)
    except ImportError as exc:
        out["torch_eager"] = f"unavailable: {exc}"
    if isinstance(out.get("torch_eager"), float):
        for name in paths:
            out[f"{name}_vs_torch"] = round(out[name] / out["torch_eager"], 2)
    return out


def _mirrored(corpus_path: Path) -> Iterator[tuple[str, Image.Image]]:
    corpus = Corpus.open(corpus_path)
    for i, image in corpus.iter_images():
        yield f"mirror-{i}", ImageOps.mirror(image)


def bench_corpus(src: Path, work: Path) -> Corpus:
    out = work / "corpus-x2"
    if (out / "corpus.json").exists():
        return Corpus.open(out)
    sources: list[ImageSource] = [
        CorpusSource(src, name="ref"),
        GeneratorSource(name="ref-mirrored", make=lambda: _mirrored(src)),
    ]
    return build_corpus(sources, out, overwrite=True)


def _config_toml(work: Path, corpus: Path, encoder: Path, backend: str) -> str:
    return dump_toml(
        {
            "device_id": "bench",
            "device_class": "bench",
            "corpus": {"path": corpus},
            "encoder": {"file": encoder, "threads": 2},
            "state": {"dir": work / ("state-" + backend)},
            "cache": {"dir": work / "cache"},
            "trust": {"public_keys": [work / "keys" / "public.pem"]},
            "head": {"backend": backend},
        }
    )


def _payload(corpus: Corpus, features: np.ndarray, work: Path, *, version: int) -> Path:
    """5,000 random indices labelled by a fixed random projection of their features."""
    rng = np.random.default_rng(0)
    indices = np.sort(rng.choice(len(corpus), size=KEPT, replace=False))
    projection = rng.normal(size=(features.shape[1], 10))
    centred = features[indices] - features[indices].mean(axis=0)
    labels = np.argmax(centred @ projection, axis=1)
    keys = work / "keys"
    if not (keys / "private.pem").exists():
        generate_keypair(keys)
    payload = TaskPayload(
        task="bench",
        version=version,
        class_names=tuple(f"c{i}" for i in range(10)),
        corpus=CorpusRef(fingerprint=corpus.fingerprint, size=len(corpus)),
        indices=indices.astype(np.int64),
        labels=labels.astype(np.int64),
        provenance=Provenance(
            builder_version="bench",
            strategy="random",
            params={},
            accuracy_estimate=None,
            created_at=int(time.time()),
        ),
    )
    path = work / f"bench-v{version}.plada"
    path.write_bytes(encode_payload(payload, signing_key=load_private_key(keys / "private.pem")))
    return path


def _run_child(cmd: list[str]) -> tuple[dict[str, Any], float]:
    """(JSON printed by the child, wall seconds)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout), time.perf_counter() - start


def bench_apply(corpus: Corpus, encoder: Path, work: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    backends = ["ort-graph", "numpy"] + (["ort-training"] if _ORT_VENV_PY.exists() else [])
    for version, backend in enumerate(backends, start=1):
        config_path = work / f"agent-{backend}.toml"
        config_path.write_text(_config_toml(work, corpus.path, encoder, backend), encoding="utf-8")
        config = load_config(config_path)
        if version == 1:
            cache = open_feature_cache(config, open_corpus(config))
            start = time.perf_counter()
            report = cache.warm()
            out["warm_cache"] = {
                "images": len(corpus),
                "images_embedded": report.images_embedded,
                "seconds": round(time.perf_counter() - start, 2),
            }
            all_features, _ = cache.features(np.arange(len(corpus)))
            payload = _payload(corpus, all_features, work, version=1)
        python = str(_ORT_VENV_PY if backend == "ort-training" else _VENV_BIN / "python")
        cmd = [python, "-m", "bench._rss", "-m", "agent", "apply", str(payload)]
        cmd += ["--config", str(config_path), "--json", "--force"]
        runs = [_run_child(cmd) for _ in range(3)]  # a shared box is noisy: keep the fastest
        result, wall = min(runs, key=lambda run: float(run[0]["applied"]["total_seconds"]))
        out[backend] = {
            "kept_images": result["applied"]["num_indices"],
            "features_computed": result["applied"]["features_computed"],
            "train_seconds": result["applied"]["train_seconds"],
            "payload_to_model_seconds": result["applied"]["total_seconds"],
            "payload_to_model_seconds_all_runs": [r[0]["applied"]["total_seconds"] for r in runs],
            "process_wall_seconds": round(wall, 2),
            "peak_rss_mb": round(max(r[0]["peak_rss_mb"] for r in runs), 1),
            "train_accuracy": round(result["applied"]["train_accuracy"], 4),
        }
    return out


def _folder_images(root: Path) -> tuple[list[Image.Image], np.ndarray, list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            with Image.open(path) as image:
                images.append(image.copy())
            labels.append(label)
    return images, np.array(labels, dtype=np.int64), classes


def bench_float16(data: Path, encoder: Path) -> dict[str, Any]:
    extractor = load_extractor(encoder, threads=2)
    hp = HeadHyperParams()
    out: dict[str, Any] = {}
    for target in ("digits", "fashion", "clipart"):
        root = data / "targets" / target
        if not root.exists():
            continue
        train_images, train_labels, classes = _folder_images(root / "train")
        test_images, test_labels, _ = _folder_images(root / "test")
        train = embed_images(extractor, train_images)
        test = embed_images(extractor, test_images)
        row = {}
        for name, transform in (("float32", lambda x: x), ("float16", _fp16)):
            result = train_head(transform(train), train_labels, num_classes=len(classes), hp=hp)
            row[name] = round(accuracy(result.weights, transform(test), test_labels), 4)
        row["delta_points"] = round(100 * (row["float16"] - row["float32"]), 2)
        row["max_abs_feature_error"] = float(np.abs(_fp16(train) - train).max())
        out[target] = row
    return out


def _fp16(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float16).astype(np.float32)


def device_accuracy(config_path: Path, payload: Path, test_dir: Path) -> dict[str, Any]:
    """Apply a builder payload on a device config, then its accuracy on a target's test split."""
    from agent.config import load_config
    from agent.pipeline import apply_payload
    from agent.predict import Predictor

    config = load_config(config_path)
    applied = apply_payload(payload.read_bytes(), config=config, force=True)
    predictor = Predictor.from_config(config, task=applied.task)
    images, labels, classes = _folder_images(test_dir)
    names = list(predictor.class_names)
    truth = np.array([names.index(classes[label]) for label in labels])
    predicted = predictor.predict_proba(images).argmax(axis=1)
    return {
        "task": applied.task,
        "kept_images": applied.num_indices,
        "payload_to_model_seconds": round(applied.total_seconds, 3),
        "device_accuracy": round(float(np.mean(predicted == truth)), 4),
        "test_images": len(labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "small")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench-agent")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "agent.json")
    parser.add_argument(
        "--check",
        nargs=3,
        metavar=("CONFIG", "PAYLOAD", "TEST_DIR"),
        help="only apply PAYLOAD on the device CONFIG and print its accuracy on TEST_DIR",
    )
    args = parser.parse_args(argv)
    if args.check:
        config, payload, test_dir = (Path(p) for p in args.check)
        print(json.dumps(device_accuracy(config, payload, test_dir), indent=2))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    enc_dir = args.work / "encoders"
    ref = args.data / "ref-v1"
    fp32 = _export(enc_dir, int8=False, corpus=ref)
    int8 = _export(enc_dir, int8=True, corpus=ref)
    paths = {"ort_fp32": fp32, "ort_int8": int8}
    if (enc_dir / "lite0-64.tflite").exists():
        paths["tflite_fp32"] = enc_dir / "lite0-64.tflite"
    corpus = Corpus.open(ref)
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "encoder_images_per_second": bench_encoders(corpus, paths),
    }
    big = bench_corpus(ref, args.work)
    results["apply_5000_warm_cache"] = bench_apply(big, int8, args.work)
    results["float16_cache_cost"] = bench_float16(args.data, int8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
