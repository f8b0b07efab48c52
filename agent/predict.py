"""Prediction on the device: one encoder pass, then every installed head (or one task's).

predictor = Predictor.from_config(load_config(Path("/etc/plada/agent.toml")))
for task, top in predictor.predict_tasks([Image.open("cat.png")], top_k=3).items():
    print(task, top[0])

The encoder is the costly part (milliseconds per image); a head is one small matrix product, so
the k-th extra task costs a head run per image, not another encoder pass (bench/multitask.py
measures it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from agent.errors import ModelStoreError
from agent.features import FeatureExtractor, embed_images, load_extractor
from agent.models import StoredModel, open_store

if TYPE_CHECKING:
    from agent.config import AgentConfig

TopK = list[tuple[str, float]]


@dataclass(frozen=True)
class _Head:
    model: StoredModel
    session: Any  # onnxruntime.InferenceSession

    def run(self, features: np.ndarray) -> np.ndarray:
        """(N, D) features -> (N, C) float32 probabilities."""
        (probs,) = self.session.run(["probabilities"], {"features": features})
        return np.asarray(probs, dtype=np.float32)


class Predictor:
    """Runs stored heads over one encoder's features. Thread-compatible, not thread-safe.

    `models` are the heads to run, one per task; the single-head API (`model`, `class_names`,
    `predict_proba`, `predict`) needs exactly one.
    """

    def __init__(
        self,
        extractor: FeatureExtractor,
        models: StoredModel | Sequence[StoredModel],
        *,
        threads: int = 1,
        batch_size: int = 32,
    ) -> None:
        chosen = [models] if isinstance(models, StoredModel) else list(models)
        if not chosen:
            raise ModelStoreError("no head to run: apply a task first (plada-agent apply)")
        for model in chosen:
            if model.meta.encoder_sha256 != extractor.info.sha256:
                raise ModelStoreError(
                    f"model {model.name} was trained on encoder {model.meta.encoder_id} "
                    f"({model.meta.encoder_sha256[:12]}), this device runs {extractor.info.id} "
                    f"({extractor.info.sha256[:12]}): apply the task again"
                )
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.extractor = extractor
        self.batch_size = batch_size
        self.heads = {
            m.task: _Head(
                m,
                ort.InferenceSession(str(m.onnx_path), options, providers=["CPUExecutionProvider"]),
            )
            for m in chosen
        }

    @classmethod
    def from_config(cls, config: AgentConfig, *, task: str | None = None) -> Predictor:
        """The device's encoder and every installed head (only `task`'s, if given);
        ModelStoreError if there is none."""
        store = open_store(config)
        models = store.installed(task)
        if not models:
            if task is not None and store.installed():
                names = ", ".join(m.task for m in store.installed())
                raise ModelStoreError(f"task {task!r} is not installed here (installed: {names})")
            raise ModelStoreError(
                f"no trained model in {config.state.dir}: apply a task first (plada-agent apply)"
            )
        extractor = load_extractor(
            config.encoder.file, backend=config.encoder.backend, threads=config.encoder.threads
        )
        return cls(extractor, models, batch_size=config.encoder.batch_size)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.heads)

    @property
    def model(self) -> StoredModel:
        """The one head (single-task use); ModelStoreError if several are loaded."""
        if len(self.heads) != 1:
            raise ModelStoreError(
                f"{len(self.heads)} tasks loaded ({', '.join(self.tasks)}): name one"
            )
        return next(iter(self.heads.values())).model

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.meta.class_names

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images -> (N, D) float32 features: the one encoder pass every head shares."""
        feats = embed_images(self.extractor, images, batch_size=self.batch_size)  # (N, D)
        return np.ascontiguousarray(feats, dtype=np.float32)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """(N, D) encoder features -> (N, C) float32 probabilities of the one head."""
        return self.heads[self.model.task].run(features.astype(np.float32))

    def proba_by_task(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """(N, D) features -> task -> (N, C_task) probabilities, every head on the same features."""
        feats = features.astype(np.float32, copy=False)
        return {task: self.heads[task].run(feats) for task in self.tasks}

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images -> (N, C) float32 probabilities of the one head."""
        if not images:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return self.predict_features(self.features(images))

    def predict(self, images: Sequence[Image.Image], *, top_k: int = 3) -> list[TopK]:
        """Per image, the one head's top_k (class name, probability) pairs, most likely first."""
        return self.predict_tasks(images, top_k=top_k)[self.model.task]

    def predict_tasks(
        self, images: Sequence[Image.Image], *, top_k: int = 3
    ) -> dict[str, list[TopK]]:
        """Task -> per image, the top_k (class, probability) pairs; one encoder pass in all."""
        if not images:
            return {task: [] for task in self.tasks}
        probs = self.proba_by_task(self.features(images))
        return {
            task: _top(p, self.heads[task].model.meta.class_names, top_k)
            for task, p in probs.items()
        }


def _top(probs: np.ndarray, names: tuple[str, ...], top_k: int) -> list[TopK]:
    k = max(1, min(top_k, probs.shape[1]))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(names[c], float(row[c])) for c in top] for row, top in zip(probs, order, strict=True)]
