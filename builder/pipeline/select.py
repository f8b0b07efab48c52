"""Selection strategies and budgets: which reference images (and labels) go into the payload.

Strategies (every one keeps exactly `keep` images when the corpus has that many):
- `low-energy`: the paper's vanilla rule, the globally lowest-energy images.
- `high-energy`: the opposite, for far-out-of-distribution targets.
- `safety-net`: a fraction s of the budget is reserved for class quotas K_c proportional to
  N_c^alpha (N_c = reference images pseudo-labelled c), each filled with that class's
  lowest-energy images; the rest of the budget goes by global energy.
- `class-top-k`: per class, the images with the highest teacher probability, equal quotas.
- `prototype`: per class, the images most cosine-similar to the class prototype, labelled with
  their nearest prototype (no teacher needed: the variant of the paper's public summaries).
- `random`: uniformly random images with the teacher's labels.
- `random-balanced`: random images with equal quotas per pseudo-label (an addition: random wins
  when much of the corpus looks like the target; quotas stop it from skipping rare classes).
- `consensus`: `random-balanced` among the images every validated device class's own teacher
  labels as the build teacher does (builder.pipeline.consensus; builds with several classes).

How many images to keep comes from the budget (budget.py; a byte budget through sizing.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from builder.errors import BudgetError, BuilderError
from builder.pipeline.scores import ReferenceScores

ParamValue = str | int | float | bool

STRATEGIES = (
    "low-energy",
    "high-energy",
    "safety-net",
    "class-top-k",
    "prototype",
    "random",
    "random-balanced",
    "consensus",
)
# Strategies that need ReferenceScores.agreement (several device classes validated).
FLEET_STRATEGIES = frozenset({"consensus"})
SAFETY_NET_DEFAULTS: dict[str, ParamValue] = {"s": 0.5, "alpha": 0.5}


@dataclass(frozen=True)
class Selection:
    indices: np.ndarray  # (k,) int64, sorted ascending, unique
    labels: np.ndarray  # (k,) int64, aligned with indices
    strategy: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)

    @property
    def keep(self) -> int:
        return int(self.indices.shape[0])

    def class_counts(self, num_classes: int) -> np.ndarray:
        return np.bincount(self.labels, minlength=num_classes)


def allocate_quotas(available: np.ndarray, weights: np.ndarray, total: int) -> np.ndarray:
    """Integer quotas summing to min(total, sum(available)), proportional to weights, each capped
    by its class's available images (what a capped class cannot take goes to the others)."""
    available = np.asarray(available, dtype=np.int64)
    weights = np.where(available > 0, np.asarray(weights, dtype=np.float64), 0.0)
    total = int(min(total, available.sum()))
    quotas = np.zeros_like(available)
    open_ = (available > 0) & (weights > 0)
    remaining = total
    while remaining > 0 and open_.any():
        w = np.where(open_, weights, 0.0)
        share = remaining * w / w.sum()
        add = np.floor(share).astype(np.int64)
        # Largest remainders get the leftover units, so the quotas sum exactly.
        leftover = remaining - int(add.sum())
        if leftover > 0:
            order = np.argsort(-(share - add), kind="stable")
            order = order[open_[order]][:leftover]
            add[order] += 1
        room = available - quotas
        add = np.minimum(add, room)
        quotas += add
        remaining -= int(add.sum())
        open_ &= quotas < available
    return quotas


def _lowest(values: np.ndarray, candidates: np.ndarray, k: int) -> np.ndarray:
    """The k candidates with the lowest values (ties by index, deterministic)."""
    if k <= 0 or len(candidates) == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((candidates, values[candidates]))
    return candidates[order[:k]].astype(np.int64)


def _per_class(labels: np.ndarray, rank_values: np.ndarray, quotas: np.ndarray) -> np.ndarray:
    picked = [
        _lowest(rank_values, np.flatnonzero(labels == c), int(q)) for c, q in enumerate(quotas)
    ]
    return np.concatenate(picked) if picked else np.empty(0, dtype=np.int64)


def _balanced(labels: np.ndarray, num_classes: int, keep: int) -> np.ndarray:
    available = np.bincount(labels, minlength=num_classes)
    return allocate_quotas(available, np.ones(num_classes), keep)


def _param(params: Mapping[str, ParamValue], name: str, default: ParamValue) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BuilderError(f"strategy parameter {name} must be a number, got {value!r}")
    return float(value)


def select(
    scores: ReferenceScores,
    *,
    strategy: str,
    keep: int,
    params: Mapping[str, ParamValue] | None = None,
    seed: int = 0,
) -> Selection:
    """Keep `keep` reference images by `strategy`; labels are the teacher's (or the nearest
    prototype's, for `prototype`)."""
    params = dict(params or {})
    n = len(scores)
    c = scores.num_classes
    if keep < 1:
        raise BudgetError(f"keep must be >= 1, got {keep}")
    keep = min(keep, n)
    labels = scores.labels
    everything = np.arange(n)
    if strategy == "low-energy":
        chosen = _lowest(scores.energy, everything, keep)
    elif strategy == "high-energy":
        chosen = _lowest(-scores.energy, everything, keep)
    elif strategy == "safety-net":
        s = _param(params, "s", SAFETY_NET_DEFAULTS["s"])
        alpha = _param(params, "alpha", SAFETY_NET_DEFAULTS["alpha"])
        if not 0.0 <= s <= 1.0:
            raise BuilderError(f"safety-net s must be in [0, 1], got {s}")
        params = {"s": s, "alpha": alpha}
        counts = np.bincount(labels, minlength=c)
        weights = np.where(counts > 0, np.maximum(counts, 1).astype(np.float64) ** alpha, 0.0)
        quotas = allocate_quotas(counts, weights, round(s * keep))
        reserved = _per_class(labels, scores.energy, quotas)
        rest = np.setdiff1d(everything, reserved)
        chosen = np.concatenate([reserved, _lowest(scores.energy, rest, keep - len(reserved))])
    elif strategy == "class-top-k":
        chosen = _per_class(labels, -scores.max_softmax, _balanced(labels, c, keep))
    elif strategy == "prototype":
        if scores.prototype_cos is None:
            raise BuilderError("the prototype strategy needs prototype scores (target features)")
        labels = np.argmax(scores.prototype_cos, axis=1).astype(np.int64)
        best_cos = scores.prototype_cos[everything, labels]
        chosen = _per_class(labels, -best_cos, _balanced(labels, c, keep))
    elif strategy == "random":
        chosen = np.random.default_rng(seed).choice(n, size=keep, replace=False)
        params = {"seed": seed}
    elif strategy == "random-balanced":
        noise = np.random.default_rng(seed).random(n)
        chosen = _per_class(labels, noise, _balanced(labels, c, keep))
        params = {"seed": seed}
    elif strategy == "consensus":
        if scores.agreement is None:
            raise BuilderError("the consensus strategy needs several device classes' agreement")
        noise = np.random.default_rng(seed).random(n)
        pool = np.where(scores.agreement, labels, -1)  # -1: no class's quota draws from it
        chosen = _per_class(pool, noise, _balanced(labels[scores.agreement], c, keep))
        if len(chosen) == 0:
            raise BudgetError("no reference image is labelled alike by every device class")
        params = {"seed": seed}
    else:
        raise BuilderError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    indices = np.unique(chosen).astype(np.int64)
    return Selection(indices, labels[indices].astype(np.int64), strategy, params)
