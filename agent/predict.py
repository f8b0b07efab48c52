"""Prediction on the device: encoder + current head -> class probabilities.

predictor = Predictor.from_config(load_config(Path("/etc/plada/agent.toml")))
for label, prob in predictor.predict([Image.open("cat.png")], top_k=3)[0]:
    print(label, prob)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from agent.errors import ModelStoreError
from agent.features import FeatureExtractor, embed_images, load_extractor
from agent.models import ModelStore, StoredModel

if TYPE_CHECKING:
    from agent.config import AgentConfig


class Predictor:
    """Runs a stored head over an encoder's features. Thread-compatible, not thread-safe."""

    def __init__(
        self,
        extractor: FeatureExtractor,
        model: StoredModel,
        *,
        threads: int = 1,
        batch_size: int = 32,
    ) -> None:
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
        self.model = model
        self.batch_size = batch_size
        self._session: Any = ort.InferenceSession(
            str(model.onnx_path), options, providers=["CPUExecutionProvider"]
        )

    @classmethod
    def from_config(cls, config: AgentConfig) -> Predictor:
        """The device's encoder and its current model; ModelStoreError if none is trained."""
        model = ModelStore(config.state.dir).current()
        if model is None:
            raise ModelStoreError(
                f"no trained model in {config.state.dir}: apply a task first (plada-agent apply)"
            )
        extractor = load_extractor(
            config.encoder.file, backend=config.encoder.backend, threads=config.encoder.threads
        )
        return cls(extractor, model, batch_size=config.encoder.batch_size)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.meta.class_names

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """(N, D) encoder features -> (N, C) float32 probabilities."""
        (probs,) = self._session.run(["probabilities"], {"features": features.astype(np.float32)})
        return np.asarray(probs, dtype=np.float32)

    def predict_proba(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Images -> (N, C) float32 probabilities."""
        if not images:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        features = embed_images(self.extractor, images, batch_size=self.batch_size)
        return self.predict_features(features)

    def predict(
        self, images: Sequence[Image.Image], *, top_k: int = 3
    ) -> list[list[tuple[str, float]]]:
        """Per image, the top_k (class name, probability) pairs, most likely first."""
        probs = self.predict_proba(images)
        k = max(1, min(top_k, probs.shape[1]))
        order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [(self.class_names[c], float(row[c])) for c in top]
            for row, top in zip(probs, order, strict=True)
        ]
