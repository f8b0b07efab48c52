"""The device path for one payload: verify -> corpus check -> decode -> features -> train -> store.

Everything that can reject the payload runs before anything is written; the model store write is
atomic, so a failure leaves the device's current model as it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.config import AgentConfig
from agent.errors import ConfigError, TaskRejectedError
from agent.features import FeatureCache, FeatureExtractor, load_extractor
from agent.models import ModelMeta, ModelStore
from agent.trainers import HeadTrainer, make_trainer
from plada.corpus import Corpus
from plada.errors import CorpusError, KeyFileError
from plada.payload import TaskPayload, check_corpus, decode_payload, payload_digest
from plada.signing import load_trusted_keys

logger = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class AppliedTask:
    """What applying a payload produced."""

    task: str
    version: int
    payload_digest: str
    num_indices: int
    num_classes: int
    train_seconds: float
    train_accuracy: float
    total_seconds: float
    features_computed: int  # indices whose features were not cached and were embedded now
    backend: str
    model_name: str
    model_path: Path  # the stored entry folder (head.onnx + meta.json)

    @property
    def model_version(self) -> Path:
        return self.model_path


def open_corpus(config: AgentConfig) -> Corpus:
    try:
        return Corpus.open(config.corpus.path, verify_reads=config.corpus.verify_reads)
    except CorpusError as exc:
        raise ConfigError(f"corpus.path: {exc}") from exc


def open_feature_cache(
    config: AgentConfig, corpus: Corpus, extractor: FeatureExtractor | None = None
) -> FeatureCache:
    extractor = extractor or load_extractor(
        config.encoder.file, backend=config.encoder.backend, threads=config.encoder.threads
    )
    return FeatureCache(
        config.cache.dir,
        corpus,
        extractor,
        dtype=config.cache.dtype,
        block_size=config.cache.block_size,
        batch_size=config.encoder.batch_size,
    )


def verify_payload(data: bytes, config: AgentConfig) -> TaskPayload:
    """Signature, bounds and expiry (PayloadError subclasses); key files -> ConfigError."""
    try:
        keys = load_trusted_keys(config.trust.public_keys)
    except KeyFileError as exc:
        raise ConfigError(f"trust.public_keys: {exc}") from exc
    return decode_payload(data, trusted_keys=keys, allow_unsigned=config.trust.allow_unsigned)


def apply_payload(
    data: bytes,
    *,
    config: AgentConfig,
    progress: Progress | None = None,
    extractor: FeatureExtractor | None = None,
    trainer: HeadTrainer | None = None,
    force: bool = False,
) -> AppliedTask:
    """Apply one task payload end to end; raises PayloadError / AgentError subclasses.

    A payload whose task already has a current model of the same or a newer version is
    rejected (TaskRejectedError) unless `force`.
    """
    report = progress or (lambda fraction, stage: None)
    started = time.perf_counter()
    report(0.0, "verify")
    payload = verify_payload(data, config)
    digest = payload_digest(data)
    corpus = open_corpus(config)
    check_corpus(payload, fingerprint=corpus.fingerprint, size=len(corpus))
    store = ModelStore(config.state.dir)
    current = store.current()
    if not force and current is not None and current.task == payload.task:
        if payload.version <= current.version:
            raise TaskRejectedError(
                f"version: task {payload.task!r} version {payload.version} is not newer than "
                f"the current model's version {current.version}"
            )
    trainer = trainer or make_trainer(config.head.backend, threads=config.head.threads)
    report(0.1, "features")
    cache = open_feature_cache(config, corpus, extractor)
    features, computed = cache.features(payload.indices)  # (k, D) float32
    report(0.6, "train")
    num_classes = len(payload.class_names)
    hp = config.head.hyper_params()
    train_start = time.perf_counter()
    result = trainer.train(features, payload.labels, num_classes=num_classes, hp=hp)
    train_seconds = time.perf_counter() - train_start
    report(0.9, "store")
    info = cache.extractor.info
    meta = ModelMeta(
        task=payload.task,
        version=payload.version,
        class_names=payload.class_names,
        payload_digest=digest,
        created_at=time.time(),
        train_seconds=train_seconds,
        train_accuracy=result.train_accuracy,
        backend=trainer.name,
        hyper_params=hp.to_dict(),
        encoder_id=info.id,
        encoder_sha256=info.sha256,
        feature_dim=info.feature_dim,
        num_examples=int(payload.indices.size),
        final_loss=float(result.losses[-1]),
        extra={
            "corpus_fingerprint": corpus.fingerprint,
            "features_computed": computed,
            "label_counts": np.bincount(payload.labels, minlength=num_classes).tolist(),
        },
    )
    stored = store.save(result.weights, meta)
    total = time.perf_counter() - started
    report(1.0, "done")
    logger.info(
        "task %s v%d applied: %d examples, %.2f s training, train accuracy %.3f",
        payload.task,
        payload.version,
        payload.indices.size,
        train_seconds,
        result.train_accuracy,
    )
    return AppliedTask(
        task=payload.task,
        version=payload.version,
        payload_digest=digest,
        num_indices=int(payload.indices.size),
        num_classes=num_classes,
        train_seconds=train_seconds,
        train_accuracy=result.train_accuracy,
        total_seconds=total,
        features_computed=computed,
        backend=trainer.name,
        model_name=stored.name,
        model_path=stored.path,
    )
