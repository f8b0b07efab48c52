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

Budgets: a keep ratio (`1%`, `0.01`), a count (`834`), or bytes (`2KiB`, `8kB`, `1500B`); a byte
budget is met by searching the largest keep count whose encoded, signed payload fits.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

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
)
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
    else:
        raise BuilderError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    indices = np.unique(chosen).astype(np.int64)
    return Selection(indices, labels[indices].astype(np.int64), strategy, params)


# ---------------------------------------------------------------------------------------- budgets

_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "k": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "m": 1024**2,
}
_BYTES_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    kind: Literal["ratio", "count", "bytes"]
    value: float

    def __str__(self) -> str:
        if self.kind == "bytes":
            return f"{int(self.value)}B"
        if self.kind == "ratio":
            return f"{self.value * 100:g}%"
        return str(int(self.value))

    def keep_for(self, corpus_size: int) -> int:
        """Keep count for ratio and count budgets."""
        if self.kind == "ratio":
            return max(1, round(self.value * corpus_size))
        if self.kind == "count":
            return min(int(self.value), corpus_size)
        raise BudgetError("a byte budget has no fixed keep count; search it with fit_to_bytes")


def parse_budget(text: str) -> Budget:
    """`2KiB`/`8kB`/`1500B` -> bytes, `1%`/`0.01` -> keep ratio, `834` -> keep count."""
    t = text.strip()
    try:
        if t.endswith("%"):
            ratio = float(t[:-1]) / 100.0
            if not 0.0 < ratio <= 1.0:
                raise BudgetError(f"budget {text!r}: a percentage must be in (0, 100]")
            return Budget("ratio", ratio)
        if re.fullmatch(r"[0-9]+", t):
            count = int(t)
            if count < 1:
                raise BudgetError(f"budget {text!r}: a keep count must be >= 1")
            return Budget("count", count)
        if re.fullmatch(r"[0-9]*\.[0-9]+", t):
            ratio = float(t)
            if not 0.0 < ratio <= 1.0:
                raise BudgetError(f"budget {text!r}: a keep ratio must be in (0, 1]")
            return Budget("ratio", ratio)
    except ValueError as exc:
        raise BudgetError(f"budget {text!r}: {exc}") from exc
    m = _BYTES_RE.match(t)
    if m is None or m.group(2).lower() not in _UNITS:
        raise BudgetError(
            f"budget {text!r} is not a size (2KiB, 8kB, 1500B), a ratio (1%, 0.01) or a count (834)"
        )
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if size < 1:
        raise BudgetError(f"budget {text!r} is under one byte")
    return Budget("bytes", float(int(size)))


def fit_to_bytes(
    make: Callable[[int], Selection],
    size_of: Callable[[Selection], int],
    *,
    max_bytes: int,
    min_keep: int,
    max_keep: int,
    rel_tol: float = 0.005,
) -> tuple[Selection, int]:
    """The selection with (within rel_tol) the largest keep in [min_keep, max_keep] whose payload
    is <= max_bytes.

    Payload size grows with keep almost linearly (and almost monotonically: it is compressed), so
    the boundary is bracketed by interpolating between the last fitting and the last too-large
    keep, guarded towards bisection: 4-8 size measurements instead of a bisection's 14. Only
    selections that were measured to fit are returned.
    """
    smallest = make(min_keep)
    smallest_size = size_of(smallest)
    if smallest_size > max_bytes:
        raise BudgetError(
            f"budget of {max_bytes} bytes is too small: keeping {min_keep} images (one per class) "
            f"already takes {smallest_size} bytes"
        )
    best, best_size = smallest, smallest_size
    lo, s_lo = min_keep, smallest_size  # lo fits
    hi, s_hi = max_keep + 1, None  # hi does not fit (or is past the end)
    while hi - lo > max(1, int(lo * rel_tol)):
        if s_hi is None:
            per_image = max(s_lo / lo, 1e-3)  # overestimates (overhead included): undershoots
            guess = lo + (max_bytes - s_lo) / per_image
        else:
            guess = lo + (hi - lo) * (max_bytes - s_lo) / max(s_hi - s_lo, 1)
        # Guard towards bisection once bracketed; before that, step at least 1 % past lo.
        margin = max(1, (hi - lo) // 8) if s_hi is not None else max(1, lo // 100)
        keep = int(min(max(guess, lo + margin), hi - 1 if s_hi is None else hi - margin))
        if keep <= lo or keep >= hi:
            keep = (lo + hi) // 2
        candidate = make(keep)
        size = size_of(candidate)
        if size <= max_bytes:
            lo, s_lo, best, best_size = keep, size, candidate, size
        else:
            hi, s_hi = keep, size
    return best, best_size


def refine_upward(
    make: Callable[[int], Selection],
    size_of: Callable[[Selection], int],
    *,
    start: Selection,
    max_bytes: int,
    max_keep: int,
    factors: tuple[float, ...] = (1.03, 1.06, 1.12),
) -> tuple[Selection, int]:
    """Grow a fitting selection by a few factors, measured with the exact size function.

    `fit_to_bytes` can search with a cheap size that bounds the exact one from above (a subset of
    the payload codecs); the exact size is then a few percent smaller, so the keep count can grow
    a little. Returns the largest tried selection that fits (`start` itself if none does)."""
    best, best_size = start, size_of(start)
    if best_size > max_bytes:
        raise BudgetError(
            f"selection of {start.keep} images takes {best_size} bytes, over the {max_bytes} budget"
        )
    for factor in factors:
        keep = min(max_keep, int(start.keep * factor))
        if keep <= best.keep:
            continue
        candidate = make(keep)
        size = size_of(candidate)
        if size > max_bytes:
            break
        best, best_size = candidate, size
    return best, best_size
