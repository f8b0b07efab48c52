"""The fleet benchmark's payloads: signed task payloads of a byte budget, made by the builder's own
payload stage and byte search (builder.pipeline.payload / sizing), as `plada-build task
--budget` makes them.

The selection is a seeded random keep of the corpus with random labels: what the fleet benchmark
measures (delivery, chunk reassembly, signature check, decode) depends on the payload's bytes and
chunk count, not on which images it keeps. Which images make a good payload is bench.accuracy's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from builder.pipeline.payload import PayloadFields, sign_payload
from builder.pipeline.select import Selection
from builder.pipeline.sizing import PayloadSizer, largest_fitting
from plada.payload import CorpusRef
from plada.signing import SigningKey

CLASS_NAMES = tuple(f"class-{i}" for i in range(10))
TASK = "fleet"


@dataclass(frozen=True)
class BudgetPayload:
    budget_bytes: int
    version: int
    keep: int
    data: bytes


def budget_payload(
    *,
    budget_bytes: int,
    version: int,
    corpus: CorpusRef,
    signing_key: SigningKey,
    seed: int = 0,
) -> BudgetPayload:
    """The signed payload of task `fleet` with the largest random keep that fits the budget."""
    fields = PayloadFields(
        task=TASK,
        version=version,
        class_names=CLASS_NAMES,
        corpus=corpus,
        created_at=int(time.time()),
        note=f"bench.fleet: random keep at a {budget_bytes}-byte budget",
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(corpus.size)
    labels = rng.integers(0, len(CLASS_NAMES), size=corpus.size, dtype=np.int64)

    def make(keep: int) -> Selection:
        indices = np.sort(order[:keep]).astype(np.int64)
        return Selection(indices, labels[indices], "random", {"seed": seed})

    sizer = PayloadSizer(fields, key_id=signing_key.key_id)
    selection = largest_fitting(
        make, sizer, max_bytes=budget_bytes, min_keep=len(CLASS_NAMES), max_keep=corpus.size
    )
    _, codec = sizer.best(selection)
    data = sign_payload(
        fields,
        selection,
        accuracy_estimate=0.0,
        signing_key=signing_key,
        codec=codec,
        max_bytes=budget_bytes,
    )
    return BudgetPayload(budget_bytes, version, selection.keep, data)
