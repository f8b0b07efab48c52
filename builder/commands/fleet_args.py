"""`plada-build task`'s fleet flags -> the device classes to validate and the objective.

    --devices A,B,...        validate these classes (the first is the default device class)
    --fleet-weights A=8,B=2  weighted objective; the classes are the weighted ones unless --devices
    --fleet-status URL|FILE  the classes of a live fleet, weighted by their device counts
    --fleet-objective worst|weighted

Class names are encoder specs or device-class profile names (firmware_configs), mapped to their
encoders; two names for one encoder are one class (weights add up).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from builder.errors import BuilderError
from builder.fleet.composition import load_profiles, read_composition, resolve_classes
from builder.pipeline.objective import FleetObjective, parse_fleet_weights
from plada.encoders import DEFAULT_DEVICE_ENCODER


@dataclass(frozen=True)
class FleetChoice:
    devices: list[str]  # encoder specs, the default device class first
    objective: FleetObjective
    source: str | None = None  # --fleet-status
    counts: Mapping[str, int] | None = None  # fleet class -> devices


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def fleet_choice(args: argparse.Namespace) -> FleetChoice:
    """The validated classes and objective from the flags (BuilderError on a conflict)."""
    profiles = load_profiles(args.profiles)
    wanted = args.fleet_objective
    if args.fleet_status is not None:
        if args.devices is not None or args.fleet_weights is not None:
            raise BuilderError(
                "--fleet-status takes the device classes and weights from the fleet: drop "
                "--devices / --fleet-weights"
            )
        fleet = read_composition(
            args.fleet_status, profiles=profiles, base_topic=args.fleet_base_topic
        )
        counts = fleet.encoder_counts()
        objective = (
            FleetObjective(wanted)
            if wanted in ("worst", "default")
            else FleetObjective("weighted", {k: float(v) for k, v in counts.items()})
        )
        return FleetChoice(list(counts), objective, fleet.source, fleet.counts)
    explicit = _split(args.devices) if args.devices is not None else None
    if explicit is not None and not explicit:
        raise BuilderError("--devices is empty")
    if args.fleet_weights is not None:
        if wanted in ("worst", "default"):
            raise BuilderError(f"--fleet-weights is for the weighted objective, not {wanted}")
        raw = parse_fleet_weights(args.fleet_weights)
        names = resolve_classes(list(raw), profiles)
        weights: dict[str, float] = {}
        for name, weight in raw.items():
            weights[names[name]] = weights.get(names[name], 0.0) + weight
        devices = (
            _unique([profiles.get(n, n) for n in explicit])
            if explicit is not None
            else list(weights)
        )
        return FleetChoice(devices, FleetObjective("weighted", weights))
    if wanted == "weighted":
        raise BuilderError("--fleet-objective weighted needs --fleet-weights or --fleet-status")
    # --devices passes encoder specs through as they are (the encoder loader names a bad one)
    devices = _unique([profiles.get(n, n) for n in explicit or [DEFAULT_DEVICE_ENCODER]])
    return FleetChoice(devices, FleetObjective("default" if wanted == "default" else "worst"))
