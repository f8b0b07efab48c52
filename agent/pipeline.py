"""The device path for one payload: verify -> corpus check -> version policy -> features ->
train -> store.

A payload is verified once (`verify_payload`, with the keys the caller holds) and passed down
decoded (`install_payload`). Everything that can reject the payload runs before anything is
written; the model store write is atomic, so a failure leaves the installed models as they were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.config import AgentConfig
from agent.errors import ConfigError
from agent.features import FeatureCache, FeatureExtractor, load_extractor
from agent.models import ModelMeta, ModelStore, open_store
from agent.trainers import HeadTrainer, make_trainer
from agent.versions import check_capacity, check_installable
from plada.corpus import Corpus
from plada.errors import CorpusError, KeyFileError, PayloadValueError
from plada.payload import TaskPayload, check_corpus, decode_payload, payload_digest
from plada.signing import load_trusted_keys
from plada.views import View

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
    config: AgentConfig,
    corpus: Corpus,
    extractor: FeatureExtractor | None = None,
    *,
    view: View | None = None,
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
        view=view,
    )


@dataclass(frozen=True)
class VerifiedPayload:
    """A payload whose signature, bounds and expiry were checked once, passed down decoded."""

    payload: TaskPayload
    digest: str  # payload id: sha256 of the envelope bytes
    num_bytes: int

    @property
    def task(self) -> str:
        return self.payload.task

    @property
    def version(self) -> int:
        return self.payload.version


def load_keys(config: AgentConfig) -> dict[str, Ed25519PublicKey]:
    """The trusted public keys the config names; ConfigError naming the key file at fault."""
    try:
        return load_trusted_keys(config.trust.public_keys)
    except KeyFileError as exc:
        raise ConfigError(f"trust.public_keys: {exc}") from exc


def verify_payload(
    data: bytes, *, trusted_keys: Mapping[str, Ed25519PublicKey], allow_unsigned: bool = False
) -> VerifiedPayload:
    """Signature, bounds, expiry and content (PayloadError subclasses), checked once."""
    payload = decode_payload(data, trusted_keys=trusted_keys, allow_unsigned=allow_unsigned)
    if payload.indices.size == 0:
        raise PayloadValueError(
            f"selection.count: {payload.task} v{payload.version} keeps no corpus images; "
            "nothing to train on"
        )
    return VerifiedPayload(payload=payload, digest=payload_digest(data), num_bytes=len(data))


def apply_payload(
    data: bytes,
    *,
    config: AgentConfig,
    progress: Progress | None = None,
    extractor: FeatureExtractor | None = None,
    trainer: HeadTrainer | None = None,
    force: bool = False,
) -> AppliedTask:
    """Verify `data` with the config's keys, then install it (`install_payload`)."""
    report = progress or (lambda fraction, stage: None)
    report(0.0, "verify")
    verified = verify_payload(
        data, trusted_keys=load_keys(config), allow_unsigned=config.trust.allow_unsigned
    )
    return install_payload(
        verified, config=config, progress=report, extractor=extractor, trainer=trainer, force=force
    )


def install_payload(
    verified: VerifiedPayload,
    *,
    config: AgentConfig,
    store: ModelStore | None = None,
    progress: Progress | None = None,
    extractor: FeatureExtractor | None = None,
    trainer: HeadTrainer | None = None,
    force: bool = False,
) -> AppliedTask:
    """Install an already verified payload end to end; raises PayloadError / AgentError /
    PladaError subclasses (agent.faults tells payload faults from device faults).

    The version policy (agent.versions) is checked against the store's record before any work
    and again, under the store's lock, when the head is saved; `force` skips it.
    """
    report = progress or (lambda fraction, stage: None)
    started = time.perf_counter()
    payload, digest = verified.payload, verified.digest
    corpus = open_corpus(config)
    check_corpus(payload, fingerprint=corpus.fingerprint, size=len(corpus))
    store = store or open_store(config)
    if not force:
        check_installable(
            store.task_record(payload.task),
            task=payload.task,
            version=payload.version,
            digest=digest,
        )
    check_capacity(store.records(), task=payload.task, max_tasks=store.max_tasks)
    trainer = trainer or make_trainer(config.head.backend, threads=config.head.threads)
    report(0.1, "features")
    # the payload's view (if any) is applied to the kept images before they are embedded
    cache = open_feature_cache(config, corpus, extractor, view=payload.view)
    features, computed = cache.features(payload.indices)  # (k, D) float32
    report(0.6, "train")
    num_classes = len(payload.class_names)
    hp = config.head.hyper_params()
    train_start = time.perf_counter()
    # the features are not read again: standardised in place, one (k, D) matrix in memory
    result = trainer.train(features, payload.labels, num_classes=num_classes, hp=hp, consume=True)
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
            "view_digest": None if payload.view is None else payload.view.digest,
        },
    )
    stored = store.save(result.weights, meta, force=force)
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
