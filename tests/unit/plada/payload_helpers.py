"""Tiny payloads for the payload, codec, signing and chunk tests."""

from __future__ import annotations

import numpy as np

from plada.payload import CorpusRef, Provenance, TaskPayload

FINGERPRINT = "ab" * 32


def make_payload(
    *,
    n: int = 1000,
    k: int = 50,
    num_classes: int = 3,
    seed: int = 0,
    expires_at: int | None = None,
) -> TaskPayload:
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)
    labels = rng.integers(0, num_classes, size=k).astype(np.int64)
    return TaskPayload(
        task="digits",
        version=3,
        class_names=tuple(f"class_{c}" for c in range(num_classes)),
        corpus=CorpusRef(fingerprint=FINGERPRINT, size=n),
        indices=indices,
        labels=labels,
        provenance=Provenance(
            builder_version="0.1.0",
            strategy="energy-low",
            params={"keep_ratio": 0.05, "safety_net": True, "alpha": -0.2, "seed": 7},
            accuracy_estimate=0.875,
            created_at=1_790_000_000,
            expires_at=expires_at,
            note="unit test",
        ),
    )
