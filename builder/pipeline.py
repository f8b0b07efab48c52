"""From a labelled target folder to a signed payload and its report: the stages wired together.

    features (teacher + each device encoder; corpus from the embedding cache)
      -> teacher (train split) -> scores of every reference image
      -> candidates (strategy, params, keep at or below the budget's cap), each with its size
      -> validation on k-fold splits of train (device head on device features), choice
      -> signed payload of the chosen selection
      -> simulation on the test split for every device class, device-oracles, leakage, report

Features come from a `FeatureSource` so the stages run on any encoder (the torch teacher, a
device's exported ONNX encoder) and, in unit tests, on cheap pixel features.
"""

from __future__ import annotations

import hashlib
import logging
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

import plada
from builder.auto import (
    DEFAULT_KEEP_FRACTIONS,
    DEFAULT_SETTINGS,
    AutoInputs,
    CandidateSpec,
    candidate_keeps,
    validate_candidates,
)
from builder.errors import BudgetError, BuilderError
from builder.leakage import DEFAULT_THRESHOLD, find_leakage
from builder.report import energy_histogram
from builder.scores import score_reference
from builder.select import Budget, ParamValue, Selection, fit_to_bytes, refine_upward, select
from builder.simulate import DEFAULT_DEVICE, device_oracle, simulate_selection
from builder.targets import TargetTask, read_images
from builder.teacher import TeacherConfig, balanced_accuracy, fit_teacher
from plada.codecs import CODECS
from plada.corpus import Corpus
from plada.head import HeadHyperParams
from plada.payload import CorpusRef, Provenance, TaskPayload, encode_payload
from plada.signing import SigningKey

logger = logging.getLogger(__name__)

# Sizes are measured with a float64 accuracy estimate (CBOR's longest float), so the final
# payload, whatever its estimate, is never larger than the size that was checked.
_SIZE_PROBE_ACCURACY = 0.123456789012345
# Codecs that encode a few thousand indices in milliseconds: the byte search measures with these
# (an upper bound of the size with every codec), then refines with all codecs (the ANS coders
# take 0.1-0.3 s per call).
_FAST_CODECS = ("paper", "rice", "gamma-class", "gamma-runs")


class FeatureSource(Protocol):
    """An encoder as the pipeline sees it: corpus features (cached) and features of images."""

    @property
    def id(self) -> str: ...

    def corpus_features(self, corpus: Corpus) -> np.ndarray:  # (N, D) float32
        ...

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:  # (B, D) float32
        ...


@dataclass(frozen=True)
class TaskConfig:
    budget: Budget
    strategy: str | None = None  # None: --auto
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    default_device: str = DEFAULT_DEVICE
    temperature: float = 1.0
    num_folds: int = 3
    repeats: int = 1
    seed: int = 0
    leakage_threshold: float = DEFAULT_THRESHOLD
    keep_fractions: tuple[float, ...] = DEFAULT_KEEP_FRACTIONS
    settings: tuple[tuple[str, Mapping[str, ParamValue]], ...] = DEFAULT_SETTINGS
    hp: HeadHyperParams = field(default_factory=HeadHyperParams)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    version: int = 1
    task_name: str | None = None
    note: str = ""
    created_at: int | None = None

    @property
    def auto(self) -> bool:
        return self.strategy is None


@dataclass(frozen=True)
class TaskFeatures:
    """Features of one encoder: the whole corpus and the target's two splits."""

    encoder: str
    reference: np.ndarray  # (N, D)
    train: np.ndarray  # (n_train, D)
    test: np.ndarray  # (n_test, D)


@dataclass(frozen=True)
class BuildResult:
    payload: bytes
    selection: Selection
    report: dict[str, Any]


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def embed_task(
    source: FeatureSource,
    corpus: Corpus,
    train_images: Sequence[Image.Image],
    test_images: Sequence[Image.Image],
) -> TaskFeatures:
    reference = source.corpus_features(corpus)
    if reference.shape[0] != len(corpus):
        raise BuilderError(
            f"encoder {source.id}: {reference.shape[0]} features for {len(corpus)} corpus images"
        )
    return TaskFeatures(
        encoder=source.id,
        reference=reference,
        train=source.image_features(train_images),
        test=source.image_features(test_images),
    )


def make_payload(
    selection: Selection,
    *,
    task_name: str,
    class_names: Sequence[str],
    corpus: Corpus,
    config: TaskConfig,
    accuracy_estimate: float | None,
    created_at: int,
) -> TaskPayload:
    return TaskPayload(
        task=task_name,
        version=config.version,
        class_names=tuple(class_names),
        corpus=CorpusRef(fingerprint=corpus.fingerprint, size=len(corpus)),
        indices=selection.indices,
        labels=selection.labels,
        provenance=Provenance(
            builder_version=plada.__version__,
            strategy=selection.strategy,
            params=dict(selection.params),
            accuracy_estimate=accuracy_estimate,
            created_at=created_at,
            note=config.note,
        ),
    )


def check_budget_fits(
    budget: Budget,
    *,
    task_name: str,
    class_names: Sequence[str],
    corpus: Corpus,
    config: TaskConfig,
    signing_key: SigningKey | None,
) -> None:
    """Refuse at once a byte budget no signed envelope fits in: the smallest payload this task
    can have (one image per class, no strategy, no parameters) is already larger."""
    if budget.kind != "bytes":
        return
    k = len(class_names)
    smallest = make_payload(
        Selection(np.arange(k, dtype=np.int64), np.arange(k, dtype=np.int64), strategy=""),
        task_name=task_name,
        class_names=class_names,
        corpus=corpus,
        config=config,
        accuracy_estimate=None,
        created_at=0,
    )
    size = len(encode_payload(smallest, signing_key=signing_key))
    if size > budget.value:
        raise BudgetError(
            f"budget {int(budget.value)} B is too small: the smallest signed payload of task "
            f"{task_name!r} ({k} class names, corpus reference, signature, one image per class) "
            f"is {size} bytes"
        )


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_task(
    corpus: Corpus,
    task: TargetTask,
    *,
    teacher_source: FeatureSource,
    device_sources: Mapping[str, FeatureSource],
    signing_key: SigningKey | None,
    config: TaskConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> BuildResult:
    """Run every stage; returns the signed payload bytes, the chosen selection and the report."""
    if config.default_device not in device_sources:
        raise BuilderError(
            f"default device class {config.default_device!r} is not among the simulated ones "
            f"({', '.join(device_sources)})"
        )
    timer = _Timer()
    start = time.perf_counter()
    if len(corpus) < task.num_classes:
        raise BudgetError(
            f"corpus has {len(corpus)} images, fewer than the {task.num_classes} classes"
        )
    check_budget_fits(
        config.budget,
        task_name=config.task_name or task.name,
        class_names=task.class_names,
        corpus=corpus,
        config=config,
        signing_key=signing_key,
    )

    with timer.stage("read_target"):
        train_images = read_images(task.train.paths)
        test_images = read_images(task.test.paths)
    with timer.stage("features"):
        tfeat = embed_task(teacher_source, corpus, train_images, test_images)
        dfeats = {
            name: embed_task(src, corpus, train_images, test_images)
            for name, src in device_sources.items()
        }
    del train_images, test_images
    # Many small BLAS calls follow. With two threads on a loaded 2-core machine OpenBLAS spins
    # and was measured 30x slower (teacher 43 s vs 1.4 s); one thread is never much slower here.
    with threadpool_limits(limits=1, user_api="blas"):
        return build_from_features(
            corpus,
            task,
            tfeat=tfeat,
            dfeats=dfeats,
            signing_key=signing_key,
            config=config,
            progress=progress,
            timer=timer,
            start=start,
        )


def build_from_features(
    corpus: Corpus,
    task: TargetTask,
    *,
    tfeat: TaskFeatures,
    dfeats: Mapping[str, TaskFeatures],
    signing_key: SigningKey | None,
    config: TaskConfig,
    progress: Callable[[str, int, int], None] | None = None,
    timer: _Timer | None = None,
    start: float | None = None,
) -> BuildResult:
    """Every stage after feature extraction (teacher features `tfeat`, device features `dfeats`)."""
    timer = timer or _Timer()
    start = time.perf_counter() if start is None else start
    num_classes = task.num_classes
    task_name = config.task_name or task.name
    created_at = config.created_at if config.created_at is not None else int(time.time())
    hp = replace(config.hp, seed=config.seed)
    y_train, y_test = task.train.labels, task.test.labels
    n_ref = len(corpus)
    device = dfeats[config.default_device]

    with timer.stage("teacher"):
        teacher = fit_teacher(tfeat.train, y_train, num_classes=num_classes, config=config.teacher)
        teacher_pred = teacher.predict(tfeat.test)
        scores = score_reference(
            teacher.logits(tfeat.reference),
            temperature=config.temperature,
            reference_features=tfeat.reference,
            target_features=tfeat.train,
            target_labels=y_train,
        )

    fast_codecs = [name for name in CODECS if name in _FAST_CODECS] or None

    def payload_for(selection: Selection, accuracy: float | None) -> bytes:
        """The smaller envelope of: best over all codecs, best over the fast ones. (The codec
        with the smallest selection bytes can still give a longer envelope, as the codec name is
        in it: taking the minimum keeps size_of <= fast_size_of, which the byte search needs.)"""
        payload = make_payload(
            selection,
            task_name=task_name,
            class_names=task.class_names,
            corpus=corpus,
            config=config,
            accuracy_estimate=accuracy,
            created_at=created_at,
        )
        full = encode_payload(payload, signing_key=signing_key)
        if fast_codecs is None:
            return full
        fast = encode_payload(payload, signing_key=signing_key, codecs=fast_codecs)
        return fast if len(fast) < len(full) else full

    def size_of(selection: Selection) -> int:
        return len(payload_for(selection, _SIZE_PROBE_ACCURACY))

    def fast_size_of(selection: Selection) -> int:
        """An upper bound of size_of: the smallest over a subset of the codecs."""
        payload = make_payload(
            selection,
            task_name=task_name,
            class_names=task.class_names,
            corpus=corpus,
            config=config,
            accuracy_estimate=_SIZE_PROBE_ACCURACY,
            created_at=created_at,
        )
        return len(encode_payload(payload, signing_key=signing_key, codecs=fast_codecs))

    # Candidates: every setting at its largest keep under the budget, and (auto) below it.
    with timer.stage("candidates"):
        settings = ((config.strategy, dict(config.params)),) if config.strategy else config.settings
        specs: list[CandidateSpec] = []
        final: list[tuple[Selection, int]] = []
        for strategy, params in settings:

            def make(keep: int, strategy: str = strategy, params: Any = params) -> Selection:
                return select(scores, strategy=strategy, keep=keep, params=params, seed=config.seed)

            if config.budget.kind == "bytes":
                max_bytes = int(config.budget.value)
                upper = min(n_ref, max_bytes * 8)
                top, _ = fit_to_bytes(
                    make, fast_size_of, max_bytes=max_bytes, min_keep=num_classes, max_keep=upper
                )
                top, _ = refine_upward(
                    make, size_of, start=top, max_bytes=max_bytes, max_keep=upper
                )
                max_keep = top.keep
            else:
                max_keep = max(num_classes, config.budget.keep_for(n_ref))
            keeps = (
                candidate_keeps(max_keep, min_keep=num_classes, fractions=config.keep_fractions)
                if config.auto
                else [max_keep]
            )
            for keep in keeps:
                selection = make(keep)
                specs.append(CandidateSpec(strategy, dict(selection.params), keep))
                final.append((selection, size_of(selection)))

    with timer.stage("validation"):
        inputs = AutoInputs(
            train_teacher=tfeat.train,
            train_labels=y_train,
            train_device=device.train,
            reference_teacher=tfeat.reference,
            reference_device=device.reference,
            num_classes=num_classes,
            teacher_l2=teacher.l2,
            temperature=config.temperature,
        )
        validation = validate_candidates(
            inputs,
            specs,
            num_folds=config.num_folds,
            repeats=config.repeats,
            seed=config.seed,
            hp=hp,
            progress=(lambda i, n: progress("validate", i, n)) if progress else None,
        )
    chosen = validation.chosen
    selection, _ = final[chosen]
    accuracy_estimate = round(validation.mean(chosen), 4)
    with timer.stage("payload"):
        payload = payload_for(selection, accuracy_estimate)
        if config.budget.kind == "bytes" and len(payload) > config.budget.value:
            raise BudgetError(
                f"signed payload is {len(payload)} bytes, over the {int(config.budget.value)} "
                "byte budget"
            )

    with timer.stage("simulate"):
        candidates: list[dict[str, Any]] = []
        for i, (spec, (sel, size)) in enumerate(zip(specs, final, strict=True)):
            result = simulate_selection(
                device.reference, sel, device.test, y_test, num_classes=num_classes, hp=hp
            )
            candidates.append(
                {
                    "strategy": spec.strategy,
                    "params": dict(spec.params),
                    "keep": spec.keep,
                    "payload_bytes": len(payload) if i == chosen else size,
                    "val_accuracy": validation.mean(i),
                    "val_std": validation.std(i),
                    "test_accuracy": result.accuracy,
                    "test_balanced_accuracy": result.balanced_accuracy,
                    "classes_kept": int(np.count_nonzero(sel.class_counts(num_classes))),
                    "chosen": i == chosen,
                }
            )
            if progress:
                progress("test", i + 1, len(specs))
        devices: dict[str, dict[str, Any]] = {}
        for name, feats in dfeats.items():
            sim = simulate_selection(
                feats.reference, selection, feats.test, y_test, num_classes=num_classes, hp=hp
            )
            oracle = device_oracle(
                feats.train, y_train, feats.test, y_test, num_classes=num_classes, hp=hp
            )
            devices[name] = {
                "encoder": feats.encoder,
                "accuracy": sim.accuracy,
                "balanced_accuracy": sim.balanced_accuracy,
                "oracle_accuracy": oracle.accuracy,
                "oracle_balanced_accuracy": oracle.balanced_accuracy,
                "relative_to_oracle": sim.accuracy / oracle.accuracy if oracle.accuracy else None,
                "balanced_relative_to_oracle": (
                    sim.balanced_accuracy / oracle.balanced_accuracy
                    if oracle.balanced_accuracy
                    else None
                ),
            }

    with timer.stage("leakage"):
        leak = find_leakage(tfeat.test, tfeat.reference, threshold=config.leakage_threshold)
        flagged = leak.flagged
        leak_examples = [
            {
                "test_image": str(task.test.paths[int(t)]),
                "reference_index": int(leak.nearest_index[t]),
                "cosine": float(leak.nearest_cosine[t]),
            }
            for t in flagged[np.argsort(-leak.nearest_cosine[flagged])][:20]
        ]
        clean = np.setdiff1d(np.arange(len(y_test)), flagged)
        teacher_clean = float(np.mean(teacher_pred[clean] == y_test[clean])) if len(clean) else None

    default = devices[config.default_device]
    report: dict[str, Any] = {
        "task": task_name,
        "version": config.version,
        "class_names": list(task.class_names),
        "target": {
            "path": str(task.root),
            "train_images": len(y_train),
            "test_images": len(y_test),
            "train_per_class": np.bincount(y_train, minlength=num_classes).tolist(),
            "test_per_class": np.bincount(y_test, minlength=num_classes).tolist(),
        },
        "corpus": {"path": str(corpus.path), "fingerprint": corpus.fingerprint, "size": n_ref},
        "budget": str(config.budget),
        "budget_kind": config.budget.kind,
        "mode": "auto" if config.auto else "strategy",
        "seed": config.seed,
        "teacher": {
            "encoder": tfeat.encoder,
            "kind": "softmax-regression",
            "l2": teacher.l2,
            "accuracy": float(np.mean(teacher_pred == y_test)),
            "balanced_accuracy": balanced_accuracy(teacher_pred, y_test),
            "accuracy_without_leaked": teacher_clean,
            "temperature": config.temperature,
        },
        "teacher_accuracy": float(np.mean(teacher_pred == y_test)),
        "default_device": config.default_device,
        "device_accuracy": default["accuracy"],
        "device_balanced_accuracy": default["balanced_accuracy"],
        "device_oracle_accuracy": default["oracle_accuracy"],
        "device_oracle_balanced_accuracy": default["oracle_balanced_accuracy"],
        "devices": devices,
        "strategy": selection.strategy,
        "params": dict(selection.params),
        "keep": selection.keep,
        "num_indices": selection.keep,
        "payload_bytes": len(payload),
        "accuracy_estimate": accuracy_estimate,
        "leakage_flags": int(leak.num_flagged),
        "leakage": {
            "threshold": config.leakage_threshold,
            "encoder": tfeat.encoder,
            "flagged": int(leak.num_flagged),
            "examples": leak_examples,
        },
        "validation": {
            "metric": "balanced_accuracy",
            "num_folds": validation.num_folds,
            "repeats": validation.repeats,
            "tie_tolerance": validation.tie_tolerance,
            "split": "train only (the test split is never used to choose)",
        },
        "notes": list(validation.notes),
        "candidates": candidates,
        "kept_per_class": selection.class_counts(num_classes).tolist(),
        "reference_pseudo_label_counts": np.bincount(scores.labels, minlength=num_classes).tolist(),
        "energy_histogram": energy_histogram(scores.energy, selection.indices),
        "head_hyperparams": hp.to_dict(),
        "timings_s": dict(timer.timings),
        "total_s": time.perf_counter() - start,
        "peak_rss_mb": _peak_rss_mb(),
    }
    logger.info(
        "task %s: %s keep=%d, %d bytes, device %.3f vs oracle %.3f",
        task_name,
        selection.strategy,
        selection.keep,
        len(payload),
        default["accuracy"],
        default["oracle_accuracy"],
    )
    return BuildResult(payload=payload, selection=selection, report=report)


class EncoderFeatures:
    """A FeatureSource over a real encoder: corpus features from the embedding cache (computed
    once per corpus and encoder), target images embedded in batches and memoised in memory (so
    several budgets or seeds of one task embed its images once)."""

    def __init__(
        self,
        spec: str,
        *,
        cache_root: Path,
        encoder_dir: Path | None = None,
        batch_size: int = 256,
        progress: bool = True,
        backend: str = "auto",
    ) -> None:
        self._spec = spec
        self._backend = backend
        self._cache_root = Path(cache_root)
        self._encoder_dir = encoder_dir
        self._batch_size = batch_size
        self._progress = progress
        self._encoder: Any = None
        self._memo: dict[str, np.ndarray] = {}

    @property
    def id(self) -> str:
        return self._spec

    def _get_encoder(self) -> Any:
        if self._encoder is None:
            from builder.encoder import load_encoder

            self._encoder = load_encoder(
                self._spec, encoder_dir=self._encoder_dir, backend=self._backend
            )
        return self._encoder

    def corpus_features(self, corpus: Corpus) -> np.ndarray:
        key = f"corpus:{corpus.fingerprint}"
        if key not in self._memo:
            from builder.embed import embed_corpus

            self._memo[key] = embed_corpus(
                corpus,
                self._get_encoder(),
                cache_root=self._cache_root,
                batch_size=self._batch_size,
                progress=self._progress,
            )
        return self._memo[key]

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        digest = hashlib.sha256()
        for image in images:
            digest.update(f"{image.mode}{image.size}".encode())
            digest.update(image.tobytes())
        key = f"images:{digest.hexdigest()}"
        if key not in self._memo:
            from builder.embed import embed_images

            self._memo[key] = embed_images(images, self._get_encoder(), batch_size=self._batch_size)
        return self._memo[key]


class ProgressBars:
    """tqdm bars (on stderr) for the stages that report progress as (stage, done, total)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bars: dict[str, Any] = {}

    def update(self, stage: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        bar = self._bars.get(stage)
        if bar is None:
            from tqdm import tqdm

            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="head", leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_task_multi(
    corpus: Corpus,
    task: TargetTask,
    *,
    teacher_sources: Sequence[FeatureSource],
    device_sources: Mapping[str, FeatureSource],
    signing_key: SigningKey | None,
    config: TaskConfig,
    progress: Callable[[str, int, int], None] | None = None,
) -> BuildResult:
    """build_task once per teacher encoder; keep the build whose chosen candidate has the best
    validation accuracy (train folds only; ties: the first teacher listed). Measured: no teacher
    encoder wins every task (a teacher on the device's own encoder labelled the digits corpus
    images far better than a stronger Lite1 one)."""
    if not teacher_sources:
        raise BuilderError("at least one teacher encoder is needed")
    results = [
        build_task(
            corpus,
            task,
            teacher_source=source,
            device_sources=device_sources,
            signing_key=signing_key,
            config=config,
            progress=progress,
        )
        for source in teacher_sources
    ]
    best = max(range(len(results)), key=lambda i: (results[i].report["accuracy_estimate"], -i))
    chosen = results[best]
    report = dict(chosen.report)
    report["teacher_choice"] = [
        {
            "encoder": r.report["teacher"]["encoder"],
            "val_accuracy": r.report["accuracy_estimate"],
            "strategy": r.report["strategy"],
            "chosen": i == best,
        }
        for i, r in enumerate(results)
    ]
    report["total_s"] = sum(float(r.report["total_s"]) for r in results)
    return BuildResult(payload=chosen.payload, selection=chosen.selection, report=report)
