"""What every benchmark module shares: the run context (data, corpus, encoders, signing key,
memoised task features), progress lines, atomic JSON writes and mean/spread helpers."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from builder.features.sources import images_digest
from plada.atomic import save_npy_atomic, write_text_atomic
from plada.encoders import DEFAULT_DEVICE_ENCODER
from plada.views import View, apply_view_all, view_digest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DEFAULT_TASKS = ("digits", "fashion", "clipart")
DEFAULT_TEACHER = "lite1-96"
# Every encoder as its ONNX export: what device classes run, and the builder's default teacher
# backend (make builder, plada-build task), so the embedding caches are shared with them.
ENCODER_BACKEND = "onnx"

_START = time.monotonic()


def log(message: str) -> None:
    """A progress line on stderr with the time since the run started."""
    elapsed = time.monotonic() - _START
    print(f"[bench {elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Results and the README are for everyone: 0644, not mkstemp's 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text, mode=0o644)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def mean_spread(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """{"mean", "sd" (sample standard deviation, 0 for one value), "n"}; None values skipped."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return {"mean": None, "sd": None, "n": 0}
    arr = np.asarray(xs)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "sd": sd, "n": len(arr)}


def setting_label(strategy: str, params: dict[str, Any]) -> str:
    """`safety-net(s=0.5,alpha=0.5)`; seeds are not part of a setting's name."""
    shown = {k: v for k, v in params.items() if k != "seed"}
    if not shown:
        return strategy
    parts = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(shown.items())]
    return f"{strategy}({','.join(parts)})"


@dataclass(frozen=True)
class TaskImages:
    train: list[Image.Image]
    test: list[Image.Image]


@dataclass
class BenchContext:
    """Settings of one `make bench` run and the expensive things it computes once."""

    data: Path
    out: Path = RESULTS
    work: Path = ROOT / "build" / "bench"
    seeds: tuple[int, ...] = (0, 1, 2)
    quick: bool = False
    tasks: tuple[str, ...] = DEFAULT_TASKS
    teacher_encoder: str = DEFAULT_TEACHER  # the strategy sweeps' and alternatives' teacher
    device: str = DEFAULT_DEVICE_ENCODER
    progress: bool = True
    jobs: int = 1  # worker processes for the accuracy sweep (one BLAS thread each)
    auto_seeds: tuple[int, ...] | None = None  # seeds of the --auto builds (None: seeds)
    ratios: tuple[float, ...] | None = None  # None: the module's default (or quick) list
    budgets: tuple[str, ...] | None = None
    hetero_budgets: tuple[str, ...] | None = None  # None: bench.hetero's default
    _sources: dict[str, Any] = field(default_factory=dict)

    @property
    def auto_teachers(self) -> list[str]:
        """The teacher encoders of the `--auto` builds: the builder's default list
        (`plada-build task --teacher-encoder`), led by this run's teacher."""
        from builder.commands.task import DEFAULT_TEACHER_ENCODER

        specs = [self.teacher_encoder, *DEFAULT_TEACHER_ENCODER.split(",")]
        return list(dict.fromkeys(s.strip() for s in specs if s.strip()))

    _corpus: Any = None
    _key: Any = None
    _targets: dict[str, Any] = field(default_factory=dict)
    _images: dict[str, TaskImages] = field(default_factory=dict)
    _features: dict[tuple[str, str], Any] = field(default_factory=dict)
    _cache_keys: dict[str, str] = field(default_factory=dict)
    _reference_rows: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)

    def release(self) -> None:
        """Forget what this run memoised for the modules so far (task features, decoded images,
        encoder sessions, reference rows) and trim the heap: `make bench` runs every module in
        one process, and what hetero and fleet_targets had loaded (3.6-3.9 GB) stayed resident
        under every later module; the embed module peaked at 7.2 GB on top of it. A later module
        that needs them reads them back from the disk caches (seconds)."""
        from bench.peak_memory import trim_heap

        self._sources.clear()
        self._features.clear()
        self._images.clear()
        self._reference_rows.clear()
        trim_heap()

    @property
    def cache_root(self) -> Path:
        """The embedding cache `make builder` uses too, so neither embeds the corpus twice."""
        return self.data / "cache" / "embeddings"

    def corpus(self) -> Any:
        if self._corpus is None:
            from plada.corpus import Corpus

            self._corpus = Corpus.open(self.data / "ref-v1")
        return self._corpus

    def source(self, spec: str) -> Any:
        """A memoised builder FeatureSource (corpus features come from the embedding cache)."""
        if spec not in self._sources:
            from builder.features.sources import EncoderFeatures

            self._sources[spec] = EncoderFeatures(
                spec, cache_root=self.cache_root, progress=self.progress, backend=ENCODER_BACKEND
            )
        return self._sources[spec]

    def private_key_path(self) -> Path:
        """The bench's signing key (work/keys/private.pem), generated on first use."""
        keys = self.work / "keys"
        if not (keys / "private.pem").exists():
            from plada.signing import generate_keypair

            generate_keypair(keys)
        return keys / "private.pem"

    def signing_key(self) -> Any:
        if self._key is None:
            from plada.signing import load_private_key

            self._key = load_private_key(self.private_key_path())
        return self._key

    def public_key_path(self) -> Path:
        self.signing_key()
        return self.work / "keys" / "public.pem"

    def target(self, name: str) -> Any:
        if name not in self._targets:
            from builder.pipeline.targets import load_target

            self._targets[name] = load_target(self.data / "targets" / name)
        return self._targets[name]

    def images(self, name: str) -> TaskImages:
        if name not in self._images:
            from builder.pipeline.targets import read_images

            task = self.target(name)
            self._images[name] = TaskImages(
                read_images(task.train.paths), read_images(task.test.paths)
            )
        return self._images[name]

    def features(self, name: str, spec: str) -> Any:
        """The TaskFeatures of task `name` under encoder `spec`: memoised, and the target splits'
        features kept on disk under work/features (keyed by the encoder's exact weights and the
        image files) so later invocations do not embed them again."""
        key = (name, spec)
        if key not in self._features:
            from builder.features.sources import TaskFeatures

            task = self.target(name)
            files = self._feature_files(name, spec, task)
            reference = self.source(spec).corpus_features(self.corpus())
            if all(f.exists() for f in files):
                train, test = (np.load(f) for f in files)
            else:
                log(f"features: {name} with {spec}")
                images = self.images(name)
                train = self.source(spec).image_features(images.train)
                test = self.source(spec).image_features(images.test)
                for path, array in zip(files, (train, test), strict=True):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    save_npy_atomic(path, array)
            self._features[key] = TaskFeatures(spec, reference, train, test)
        return self._features[key]

    def precomputed(self, name: str, spec: str) -> PrecomputedFeatures:
        """A FeatureSource over this task's features under `spec` (for build_task in workers)."""
        feats = self.features(name, spec)
        images = self.images(name)
        return PrecomputedFeatures(
            spec,
            feats.reference,
            {images_digest(images.train): feats.train, images_digest(images.test): feats.test},
        )

    def cached_image_features(self, spec: str, images: Sequence[Image.Image]) -> np.ndarray:
        """Features of `images` under `spec`, kept on disk under work/features (keyed by the
        encoder's exact weights and the pixels), so a later invocation does not embed again."""
        import hashlib

        from builder.encoders.load import load_encoder

        if spec not in self._cache_keys:
            self._cache_keys[spec] = load_encoder(spec, backend=ENCODER_BACKEND).cache_key
        key = hashlib.sha256(f"{self._cache_keys[spec]}|{images_digest(images)}".encode())
        path = self.work / "features" / f"img-{spec}-{key.hexdigest()[:20]}.npy"
        if path.exists():
            cached: np.ndarray = np.load(path)
            return cached
        out: np.ndarray = self.source(spec).image_features(images)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npy_atomic(path, out)
        return out

    def reference_rows(
        self, spec: str, indices: Sequence[int] | np.ndarray, view: View | None = None
    ) -> np.ndarray:
        """(len(indices), D) features of corpus images under `spec`, as a payload's `view` shows
        them (plada.views; None: as stored), for an encoder with no whole-corpus cache: each
        image is embedded once per run and view, however many payloads (seeds, budgets, tasks)
        keep it, and the embedded batch is cached on disk."""
        key = spec if view is None else f"{spec}|{view_digest(view)}"
        rows = self._reference_rows.setdefault(key, {})
        missing = sorted({int(i) for i in indices} - rows.keys())
        if missing:
            images = apply_view_all(view, self.corpus().images(missing))
            features = self.cached_image_features(spec, images)
            rows.update(zip(missing, features, strict=True))
        return np.stack([rows[int(i)] for i in indices]).astype(np.float32, copy=False)

    def _feature_files(self, name: str, spec: str, task: Any) -> tuple[Path, Path]:
        import hashlib

        from builder.encoders.load import load_encoder

        digest = hashlib.sha256(load_encoder(spec, backend=ENCODER_BACKEND).cache_key.encode())
        for path in (*task.train.paths, *task.test.paths):
            stat = Path(path).stat()
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        stem = self.work / "features" / f"{name}-{spec}-{digest.hexdigest()[:16]}"
        return stem.with_name(stem.name + "-train.npy"), stem.with_name(stem.name + "-test.npy")


class PrecomputedFeatures:
    """A builder FeatureSource that serves features computed before: the corpus features and
    the target splits' features, looked up by the images' digest. Forked workers use it so they
    never run an encoder (torch or ORT thread pools do not survive a fork)."""

    def __init__(self, spec: str, reference: np.ndarray, images: dict[str, np.ndarray]) -> None:
        self._spec = spec
        self._reference = reference
        self._images = images

    @property
    def id(self) -> str:
        return self._spec

    def corpus_features(self, corpus: Any) -> np.ndarray:
        return self._reference

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        key = images_digest(images)
        if key not in self._images:
            raise KeyError(f"{self._spec}: no precomputed features for these {len(images)} images")
        return self._images[key]


def pick(rows: Sequence[dict[str, Any]], **match: Any) -> list[dict[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]
