"""What `--auto` maximises when it validates several device classes: one score per candidate and
validation split, from every class's score on that split relative to its own validated oracle.

A class's ratio on a split is its balanced accuracy with the candidate's selection divided by
the balanced accuracy of the same head trained on the split's labelled train part (the class's
oracle on that split), so classes with weak encoders count as much as strong ones. The fleet
score of a split is then the worst class's ratio (`worst`, the default: no class is sacrificed
for another) or the mean weighted by the user's per-class weights (`weighted`, e.g. the fleet's
composition) or, to compare with builds before fleets, the default class's accuracy alone
(`default`: the others are validated for the report only). Aggregating per split keeps a spread
over splits for the tie rule and the report.
With a single class the objective is its balanced accuracy itself, as before fleets existed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from builder.errors import BuilderError

ObjectiveKind = Literal["worst", "weighted", "default"]


@dataclass(frozen=True)
class FleetObjective:
    kind: ObjectiveKind = "worst"
    weights: Mapping[str, float] = field(default_factory=dict)  # weighted: class -> weight

    def __post_init__(self) -> None:
        if self.kind not in ("worst", "weighted", "default"):
            raise BuilderError(
                f"fleet objective must be worst, weighted or default, got {self.kind!r}"
            )
        if self.kind == "weighted" and not self.weights:
            raise BuilderError("a weighted fleet objective needs per-class weights")
        bad = {k: w for k, w in self.weights.items() if not (np.isfinite(w) and w >= 0)}
        if bad:
            raise BuilderError(f"fleet weights must be finite and >= 0, got {bad}")
        if self.weights and sum(self.weights.values()) <= 0:
            raise BuilderError("fleet weights sum to 0")

    def describe(self) -> str:
        if self.kind == "worst":
            return "worst class's ratio to its own oracle"
        if self.kind == "default":
            return "the default device class's accuracy (the others validated for the report)"
        parts = ", ".join(f"{k}={w:g}" for k, w in self.weights.items())
        return f"weighted mean of the classes' ratios to their own oracles ({parts})"


def parse_fleet_weights(text: str) -> dict[str, float]:
    """`lite0-64-int8=8,lite1-96=2` -> {"lite0-64-int8": 8.0, "lite1-96": 2.0}."""
    weights: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        name = name.strip()
        try:
            value = float(raw) if sep else float("nan")
        except ValueError:
            value = float("nan")
        if not name or not np.isfinite(value) or value < 0:
            raise BuilderError(
                f"--fleet-weights {item!r}: expected CLASS=WEIGHT with a weight >= 0"
            )
        if name in weights:
            raise BuilderError(f"--fleet-weights names {name!r} twice")
        weights[name] = value
    if not weights:
        raise BuilderError("--fleet-weights is empty: expected CLASS=WEIGHT,...")
    if sum(weights.values()) <= 0:
        raise BuilderError("--fleet-weights sum to 0")
    return weights


def check_weights(objective: FleetObjective, classes: Sequence[str]) -> None:
    """Every weighted class must be validated, and every validated class weighted."""
    if objective.kind != "weighted":
        return
    unknown = sorted(set(objective.weights) - set(classes))
    if unknown:
        raise BuilderError(
            f"fleet weights name device classes that are not validated: {', '.join(unknown)} "
            f"(validated: {', '.join(classes)})"
        )
    missing = [c for c in classes if c not in objective.weights]
    if missing:
        raise BuilderError(f"fleet weights miss device classes: {', '.join(missing)}")


def class_ratios(scores: np.ndarray, oracle: np.ndarray) -> np.ndarray:
    """(C, S, F) scores of C classes, S candidates, F splits over (C, F) oracles -> ratios."""
    if scores.ndim != 3 or oracle.shape != (scores.shape[0], scores.shape[2]):
        raise BuilderError(f"scores {scores.shape} do not match oracles {oracle.shape}")
    out: np.ndarray = scores / np.maximum(oracle, 1e-9)[:, None, :]
    return out


def fleet_scores(
    scores: np.ndarray, oracle: np.ndarray, classes: Sequence[str], objective: FleetObjective
) -> np.ndarray:
    """(S, F) the objective per candidate and split (see the module docstring)."""
    if len(classes) != scores.shape[0]:
        raise BuilderError(f"{len(classes)} class names for {scores.shape[0]} classes' scores")
    if len(classes) == 1 or objective.kind == "default":
        out: np.ndarray = scores[0].copy()
        return out
    ratios = class_ratios(scores, oracle)
    if objective.kind == "worst":
        worst: np.ndarray = ratios.min(axis=0)
        return worst
    check_weights(objective, classes)
    w = np.asarray([objective.weights[c] for c in classes], dtype=np.float64)
    weighted: np.ndarray = np.tensordot(w / w.sum(), ratios, axes=1)
    return weighted


def worst_class(ratios: Mapping[str, float]) -> str:
    """The class with the lowest ratio (ties: the first listed)."""
    if not ratios:
        raise BuilderError("no device class to compare")
    return min(ratios, key=lambda name: ratios[name])
