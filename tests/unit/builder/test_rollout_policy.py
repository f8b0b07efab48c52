"""builder.fleet.rollout_policy: the threshold, each device's verdict, promote or abort."""

from __future__ import annotations

import pytest

from builder.fleet.rollout_policy import Observation, Threshold, decide, judge


def test_required_accuracy_is_the_larger_of_the_bounds_that_apply() -> None:
    # Prepare
    both = Threshold(min_accuracy=0.7, min_fraction=0.9)
    # Execute / Assert
    assert Threshold().required(0.8) == pytest.approx(0.72)  # default: 0.9 of the simulation
    assert both.required(0.9) == pytest.approx(0.81)
    assert both.required(0.5) == pytest.approx(0.7)
    assert both.required(None) == pytest.approx(0.7)  # no simulation for that class
    assert Threshold().required(None) is None  # nothing to judge by
    with pytest.raises(ValueError, match="min_fraction"):
        Threshold(min_fraction=1.5)
    with pytest.raises(ValueError, match="needs"):
        Threshold(min_accuracy=None, min_fraction=None)


@pytest.mark.parametrize(
    ("obs", "required", "timed_out", "verdict"),
    [
        (Observation(answered=True, accuracy=0.8), 0.72, False, "pass"),
        (Observation(answered=True, accuracy=0.72), 0.72, False, "pass"),  # at the bound
        (Observation(answered=True, accuracy=0.5), 0.72, False, "below"),
        (Observation(answered=True, accuracy=None), 0.72, False, "no_probe"),
        (Observation(answered=True, accuracy=0.9), None, False, "no_reference"),
        (Observation(refused=True), 0.72, False, "refused"),
        (Observation(), 0.72, False, None),  # still waiting
        (Observation(), 0.72, True, "no_answer"),
    ],
)
def test_judge(obs: Observation, required: float | None, timed_out: bool, verdict: str) -> None:
    # Execute / Assert
    assert judge(obs, required=required, timed_out=timed_out) == verdict


def test_one_failing_canary_aborts_at_once_even_while_others_wait() -> None:
    # Execute
    decision = decide({"a": "pass", "b": "below", "c": None}, on_timeout="ignore", timed_out=False)
    # Assert
    assert decision is not None and decision.outcome == "aborted"
    assert "b (below)" in decision.reason


def test_waits_while_a_canary_may_still_answer_then_promotes() -> None:
    # Execute
    waiting = decide({"a": "pass", "b": None}, on_timeout="abort", timed_out=False)
    done = decide({"a": "pass", "b": "pass"}, on_timeout="abort", timed_out=False)
    # Assert
    assert waiting is None
    assert done is not None and done.outcome == "promoted"


def test_timeout_a_silent_canary_aborts_by_default_or_is_left_out() -> None:
    # Prepare
    verdicts = {"a": "pass", "ghost": "no_answer"}
    # Execute
    strict = decide(verdicts, on_timeout="abort", timed_out=True)  # type: ignore[arg-type]
    lenient = decide(verdicts, on_timeout="ignore", timed_out=True)  # type: ignore[arg-type]
    nobody = decide({"ghost": "no_answer"}, on_timeout="ignore", timed_out=True)
    # Assert
    assert strict is not None and strict.outcome == "aborted" and "ghost" in strict.reason
    assert lenient is not None and lenient.outcome == "promoted" and "1 silent" in lenient.reason
    assert nobody is not None and nobody.outcome == "aborted"


def test_no_canary_device_is_an_abort() -> None:
    # Execute
    decision = decide({}, on_timeout="ignore", timed_out=False)
    # Assert
    assert decision is not None and decision.outcome == "aborted"
