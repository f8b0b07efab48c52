"""A staged rollout's decision: how each device is judged, and when to promote or abort.

Pure functions over what the devices reported, so every rule is unit-tested without a broker.

**Threshold.** A device passes when its reported ``probe_accuracy`` (agent.results: accuracy on
the device's own labelled probe images) is at least the *required* accuracy: the larger of
``min_accuracy`` (absolute) and ``min_fraction`` x the builder's simulated accuracy for the
device's class (report.json ``devices[<class>].accuracy``, the build's own estimate of what a
device of that class reaches). The default is ``min_fraction`` 0.9 alone: a canary within 10 % of
the simulation passes (the probe set is small, so a few images either way must not abort a good
task; a mismatch between device and simulation, a wrong corpus, encoder or view, costs far more).
Where neither applies (no absolute threshold and no simulated accuracy for that class) the device
cannot be judged: ``no_reference``, which fails.

**Verdicts.** ``pass``; ``below`` (answered under the threshold); ``refused`` (the device refused
the payload: a payload fault reported for this version); ``no_probe`` (answered without a probe
accuracy: the device has no probe set, so nothing to judge); ``no_reference`` (see above);
``no_answer`` (no result and no refusal when the timeout ran out); ``not_judged`` (a canary
device that had not answered when another one's failure decided the abort, and did not answer
before its rollback either).

**Decision** (canary devices only): abort as soon as one canary device has a failing verdict
(the outcome cannot change); promote when every canary device passed. At the timeout, devices
that never answered count as failures with ``on_timeout="abort"`` (the default: silence is not
evidence that a task works, and a device that cannot report is the first one a field team must
look at), or are left out with ``on_timeout="ignore"``, which still needs at least one canary
device that passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Verdict = Literal["pass", "below", "refused", "no_probe", "no_reference", "no_answer", "not_judged"]
Outcome = Literal["promoted", "aborted"]
OnTimeout = Literal["abort", "ignore"]
FAILING: tuple[Verdict, ...] = ("below", "refused", "no_probe", "no_reference")
DEFAULT_MIN_FRACTION = 0.9


@dataclass(frozen=True)
class Threshold:
    min_accuracy: float | None = None  # absolute, 0..1
    min_fraction: float | None = DEFAULT_MIN_FRACTION  # of the simulated accuracy, 0..1

    def __post_init__(self) -> None:
        for name in ("min_accuracy", "min_fraction"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"{name} {value} is outside (0, 1]")
        if self.min_accuracy is None and self.min_fraction is None:
            raise ValueError("a threshold needs min_accuracy, min_fraction or both")

    def required(self, simulated: float | None) -> float | None:
        """The accuracy a device must reach, or None when nothing applies to it."""
        bounds = []
        if self.min_accuracy is not None:
            bounds.append(self.min_accuracy)
        if self.min_fraction is not None and simulated is not None:
            bounds.append(self.min_fraction * simulated)
        return max(bounds) if bounds else None


@dataclass(frozen=True)
class Observation:
    """What one device reported about the rolled-out payload so far."""

    answered: bool = False  # a result for this very payload
    accuracy: float | None = None  # its probe_accuracy
    refused: bool = False  # a payload fault for this version


def judge(obs: Observation, *, required: float | None, timed_out: bool) -> Verdict | None:
    """The device's verdict, or None while it may still answer."""
    if obs.refused and not obs.answered:
        return "refused"
    if not obs.answered:
        return "no_answer" if timed_out else None
    if obs.accuracy is None:
        return "no_probe"
    if required is None:
        return "no_reference"
    return "pass" if obs.accuracy >= required else "below"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str


def decide(
    verdicts: Mapping[str, Verdict | None], *, on_timeout: OnTimeout, timed_out: bool
) -> Decision | None:
    """Promote or abort from the canary devices' verdicts, or None to keep waiting."""
    if not verdicts:
        return Decision("aborted", "no canary device to judge")
    failing = sorted(d for d, v in verdicts.items() if v in FAILING)
    if failing:
        what = ", ".join(f"{d} ({verdicts[d]})" for d in failing)
        return Decision("aborted", f"canary failed: {what}")
    if any(v is None for v in verdicts.values()) and not timed_out:
        return None
    silent = sorted(d for d, v in verdicts.items() if v in (None, "no_answer"))
    passed = sorted(d for d, v in verdicts.items() if v == "pass")
    if silent and on_timeout == "abort":
        return Decision("aborted", f"no answer before the timeout: {', '.join(silent)}")
    if not passed:
        return Decision("aborted", "no canary device answered before the timeout")
    note = f" ({len(silent)} silent device(s) left out)" if silent else ""
    return Decision("promoted", f"{len(passed)} canary device(s) cleared the threshold{note}")
