"""`--fine-tune`: the teacher encoder fine-tuned on the target's train split, as a new teacher
encoder whose features the build extracts like any other (the corpus re-embedded with it).

The backbone (torch, CPU) and a linear head are trained with class-weighted cross-entropy; batch
norm keeps its ImageNet statistics (a few hundred images in batches of 32 would move them more
than they teach). It is costly: the corpus is embedded once more per build with torch eager, so it
is off by default and its time is a stage of its own in the report ("fine_tune", and "features"
for the re-embedding). The fine-tuned features are memoised in memory only: the weights belong to
one task and seed."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from builder.errors import BuilderError
from builder.features.sources import CorpusImages, images_digest


@dataclass(frozen=True)
class FineTuneConfig:
    epochs: int = 3
    batch_size: int = 32
    backbone_lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def _freeze_batch_norm(module: Any) -> None:
    import torch

    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def fine_tune_encoder(
    spec: str,
    images: Sequence[Image.Image],
    labels: np.ndarray,
    *,
    num_classes: int,
    config: FineTuneConfig,
) -> Any:
    """A TorchEncoder for `spec` whose backbone was trained on (images, labels)."""
    import torch

    from builder.encoders.torch_encoder import TorchEncoder
    from builder.features.embed import preprocess_for
    from plada.encoders import parse_encoder_spec

    if len(images) != len(labels) or len(images) == 0:
        raise BuilderError(f"fine-tune: {len(images)} images for {len(labels)} labels")
    encoder = TorchEncoder(parse_encoder_spec(spec), channels_last=False)
    x = torch.from_numpy(preprocess_for(encoder, images))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    gen = torch.Generator().manual_seed(config.seed)
    head = torch.nn.Linear(encoder.feature_dim, num_classes)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 0.0)
    loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
    module = encoder.module
    opt = torch.optim.AdamW(
        [
            {"params": module.parameters(), "lr": config.backbone_lr},
            {"params": head.parameters(), "lr": config.head_lr},
        ],
        weight_decay=config.weight_decay,
    )
    module.train()
    _freeze_batch_norm(module)
    for _ in range(config.epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), config.batch_size):
            batch = order[start : start + config.batch_size]
            opt.zero_grad()
            loss_fn(head(module(x[batch])), y[batch]).backward()
            opt.step()
    module.eval()
    return encoder


def weights_digest(module: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class FineTunedFeatures:
    """A FeatureSource over a fine-tuned encoder (memoised in memory, see the module doc)."""

    def __init__(self, encoder: Any, *, batch_size: int = 64) -> None:
        self._encoder = encoder
        self._batch_size = batch_size
        self._digest = weights_digest(encoder.module)
        self._memo: dict[str, np.ndarray] = {}

    @property
    def id(self) -> str:
        return f"{self._encoder.id}-ft-{self._digest[:8]}"

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        from builder.features.embed import embed_images

        key = images_digest(images)
        if key not in self._memo:
            self._memo[key] = embed_images(images, self._encoder, batch_size=self._batch_size)
        return self._memo[key]

    def corpus_features(self, corpus: CorpusImages) -> np.ndarray:
        from builder.features.embed import embed_images

        key = f"corpus:{corpus.fingerprint}"
        if key not in self._memo:
            out = np.empty((len(corpus), self._encoder.feature_dim), dtype=np.float32)
            for start in range(0, len(corpus), 1024):
                rows = range(start, min(start + 1024, len(corpus)))
                out[start : rows.stop] = embed_images(
                    corpus.images(rows), self._encoder, batch_size=self._batch_size
                )
            self._memo[key] = out
        return self._memo[key]
