"""The candidates stage: every (strategy, params) setting at the largest keep its budget allows
and (--auto) at smaller keeps, each selection with the exact size of its signed payload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from builder.pipeline.budget import Budget
from builder.pipeline.scores import ReferenceScores
from builder.pipeline.select import FLEET_STRATEGIES, ParamValue, Selection, select
from builder.pipeline.sizing import PayloadSizer, largest_fitting
from plada.ordered_pool import map_ordered

Setting = tuple[str, Mapping[str, ParamValue]]
# The default --auto grid: every family once (measured on the three default targets: the second
# and third safety-net settings never won and tripled the validation time).
DEFAULT_SETTINGS: tuple[Setting, ...] = (
    ("low-energy", {}),
    ("high-energy", {}),
    ("safety-net", {"s": 0.5, "alpha": 0.5}),
    ("class-top-k", {}),
    ("prototype", {}),
    ("random", {}),
    ("random-balanced", {}),
    ("consensus", {}),  # only where several device classes are validated (FLEET_STRATEGIES)
)
DEFAULT_KEEP_FRACTIONS = (1.0, 0.5)


@dataclass(frozen=True)
class CandidateSpec:
    strategy: str
    params: Mapping[str, ParamValue]
    keep: int


@dataclass(frozen=True)
class Candidate:
    spec: CandidateSpec
    selection: Selection
    payload_bytes: int  # of the signed payload, with `codec`
    codec: str


def candidate_keeps(
    max_keep: int, *, min_keep: int, fractions: Sequence[float] = DEFAULT_KEEP_FRACTIONS
) -> list[int]:
    """Keep counts at and below the cap (a byte budget is a cap: smaller can be more accurate)."""
    keeps = {max(min_keep, round(max_keep * f)) for f in fractions}
    return sorted((k for k in keeps if k <= max_keep), reverse=True)


def make_candidates(
    scores: ReferenceScores,
    *,
    settings: Sequence[Setting],
    budget: Budget,
    keep_fractions: Sequence[float] | None,
    seed: int,
    sizer: PayloadSizer,
    workers: int | None = None,
) -> list[Candidate]:
    """Per setting, its largest keep first (keep_fractions None: that keep only). The settings
    are sized on `workers` threads (default: one per core): the byte search is mostly Zstd and
    rANS encoding, which run outside the GIL (a 32 KiB build spent 49 s here on one core). The
    candidates are the same for any number of threads. Fleet-only strategies are skipped when the
    scores carry no agreement (one device class) or no image is agreed on."""
    if scores.agreement is None or not scores.agreement.any():
        settings = [s for s in settings if s[0] not in FLEET_STRATEGIES]
    per_setting = map_ordered(
        lambda setting: _setting_candidates(
            scores, setting, budget=budget, keep_fractions=keep_fractions, seed=seed, sizer=sizer
        ),
        settings,
        workers=workers,
        name="candidates",
    )
    return [candidate for found in per_setting for candidate in found]


def _setting_candidates(
    scores: ReferenceScores,
    setting: Setting,
    *,
    budget: Budget,
    keep_fractions: Sequence[float] | None,
    seed: int,
    sizer: PayloadSizer,
) -> list[Candidate]:
    strategy, params = setting
    n_ref, num_classes = len(scores), scores.num_classes

    def make(keep: int) -> Selection:
        return select(scores, strategy=strategy, keep=keep, params=params, seed=seed)

    if budget.kind == "bytes":
        max_bytes = int(budget.value)
        top = largest_fitting(
            make,
            sizer,
            max_bytes=max_bytes,
            min_keep=num_classes,
            max_keep=min(n_ref, max_bytes * 8),
        )
        max_keep = top.keep
    else:
        max_keep = max(num_classes, budget.keep_for(n_ref))
    keeps = (
        candidate_keeps(max_keep, min_keep=num_classes, fractions=keep_fractions)
        if keep_fractions is not None
        else [max_keep]
    )
    candidates = []
    for keep in keeps:
        selection = make(keep)
        size, codec = sizer.best(selection)
        spec = CandidateSpec(strategy, dict(selection.params), keep)
        candidates.append(Candidate(spec, selection, size, codec))
    return candidates
