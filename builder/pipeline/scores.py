"""Per-reference-image scores: what every selection strategy ranks by.

- pseudo-label: argmax of the teacher's logits (hard labels only, as in the paper);
- energy: E(x) = -T * logsumexp(logits / T); low = the teacher finds x in-distribution;
- entropy and max-softmax of softmax(logits / T);
- prototype cosine: cosine between x and each class mean of the target's train features, both
  centred on the reference corpus's mean (pooled ReLU features are all positive, so raw cosines
  all sit near 1 and rank badly). Needs no teacher: the "prototype top-k" variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builder.errors import BuilderError
from builder.features.stream import column_mean, row_chunks


@dataclass(frozen=True)
class ReferenceScores:
    labels: np.ndarray  # (N,) int64 teacher pseudo-labels
    energy: np.ndarray  # (N,) float32
    entropy: np.ndarray  # (N,) float32
    max_softmax: np.ndarray  # (N,) float32
    prototype_cos: np.ndarray | None  # (N, C) float32, or None when no prototypes were given
    temperature: float
    num_classes: int
    # (N,) bool, builds validating several device classes: every class's own teacher gives the
    # image this label (builder.pipeline.consensus); None otherwise
    agreement: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def energy_scores(logits: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    """-T * logsumexp(logits / T), stable, (N,) float32."""
    if temperature <= 0:
        raise BuilderError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, dtype=np.float64) / temperature
    top = z.max(axis=1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    out: np.ndarray = (-temperature * lse).astype(np.float32)
    return out


def softmax(logits: np.ndarray, *, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def class_prototypes(
    features: np.ndarray, labels: np.ndarray, *, num_classes: int, center: np.ndarray
) -> np.ndarray:
    """(C, D) unit-norm class means of centred target features."""
    protos = np.zeros((num_classes, features.shape[1]), dtype=np.float64)
    for c in range(num_classes):
        members = features[labels == c]
        if len(members) == 0:
            raise BuilderError(f"class {c} has no target features for its prototype")
        protos[c] = members.astype(np.float64).mean(axis=0) - center
    norms = np.linalg.norm(protos, axis=1, keepdims=True)
    out: np.ndarray = (protos / np.maximum(norms, 1e-12)).astype(np.float32)
    return out


def prototype_cosine(
    features: np.ndarray, prototypes: np.ndarray, *, center: np.ndarray, batch_size: int = 8192
) -> np.ndarray:
    """(N, C) cosine between centred features and unit prototypes, batched."""
    out = np.empty((features.shape[0], prototypes.shape[0]), dtype=np.float32)
    c32 = center.astype(np.float32)
    for start, chunk in row_chunks(features, batch_size):  # pages released as it goes
        x = chunk - c32
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        out[start : start + batch_size] = x @ prototypes.T
    return out


def score_reference(
    logits: np.ndarray,
    *,
    temperature: float = 1.0,
    reference_features: np.ndarray | None = None,
    target_features: np.ndarray | None = None,
    target_labels: np.ndarray | None = None,
) -> ReferenceScores:
    """Scores of every reference image from the teacher's (N, C) logits.

    When reference and target features (same encoder) and target labels are given, prototype cosine
    similarities are computed too.
    """
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise BuilderError(f"logits must be (N, C>=2), got {logits.shape}")
    probs = softmax(logits, temperature=temperature)
    entropy = -(probs * np.log(np.maximum(probs, 1e-30))).sum(axis=1)
    proto_cos: np.ndarray | None = None
    if reference_features is not None and target_features is not None:
        if target_labels is None:
            raise BuilderError("prototype scores need the target labels")
        if reference_features.shape[0] != logits.shape[0]:
            raise BuilderError(
                f"{reference_features.shape[0]} reference features for {logits.shape[0]} logits"
            )
        center = column_mean(reference_features)  # streamed: (N, D) may be a 5 GB mapping
        protos = class_prototypes(
            target_features, target_labels, num_classes=logits.shape[1], center=center
        )
        proto_cos = prototype_cosine(reference_features, protos, center=center)
    return ReferenceScores(
        labels=np.argmax(logits, axis=1).astype(np.int64),
        energy=energy_scores(logits, temperature=temperature),
        entropy=entropy.astype(np.float32),
        max_softmax=probs.max(axis=1).astype(np.float32),
        prototype_cos=proto_cos,
        temperature=temperature,
        num_classes=int(logits.shape[1]),
    )
