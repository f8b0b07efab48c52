"""A staged rollout: the canary group first, its reported accuracy judged, then the rest or back.

    record = run_rollout(payload, options=..., canary=["canary"], rest=["field"],
                         signing_key=key, threshold=Threshold(min_fraction=0.9),
                         simulated={"x86-dev": 0.91}, timeout_s=600)

1. Who takes part: every device whose retained status names one of the groups (agents report
   their ``group``), plus any listed in ``devices`` (group -> ids) for agents that do not.
2. The revocation that an abort needs is made and signed first (plada.revocation), so a missing
   or wrong key fails before anything is published.
3. The payload is published to the canary group(s) exactly as `plada-build publish` does (same
   checks); what the groups retained of the task before is kept, to be put back on an abort.
4. Each canary device's retained result for this very payload (``probe_accuracy``) and its status
   (a payload fault for this version) are watched live and judged (builder.fleet.rollout_policy)
   until the decision is certain or ``timeout_s`` after the publish.
5. Promoted: the payload goes to the rest group(s); their results are awaited (same timeout) for
   the record. Aborted: the signed revocation is published to the canary group(s), their retained
   copy of the payload cleared and the previous one restored (builder.fleet.revoke); the canary
   devices that installed it are awaited until their status no longer serves the version. The
   rest never receive the task.
6. The record (builder.fleet.rollout_record) has per device its group, class, verdict, reported
   and required accuracy, version serving at the end, times, and what Home Assistant shows for
   its task entity, rendered from the retained discovery config and state topics
   (builder.fleet.home_assistant).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.errors import RolloutError
from builder.fleet.home_assistant import DEFAULT_PREFIX, discovery_filter, home_assistant_view
from builder.fleet.publish import publish_payload
from builder.fleet.publish_check import check_publishable, check_revocation
from builder.fleet.revoke import RevokeReport, retained_payload, revoke_version
from builder.fleet.rollout_policy import (
    Decision,
    Observation,
    OnTimeout,
    Threshold,
    Verdict,
    decide,
    judge,
)
from builder.fleet.rollout_record import (
    DeviceOutcome,
    RevokedGroup,
    RolloutRecord,
    ThresholdRecord,
)
from builder.fleet.session import BrokerOptions
from builder.fleet.status import DeviceStatus, TaskResultMessage, TaskState, parse_message
from builder.fleet.watch import FleetWatch
from plada.chunks import DEFAULT_MAX_CHUNK_BYTES
from plada.payload import payload_digest
from plada.revocation import encode_revocation, make_revocation
from plada.topics import TopicKind, TopicScheme

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from plada.signing import SigningKey

ProgressFn = Callable[[str, int, int], None]  # (phase, devices done, devices in the phase)
PHASES = ("canary results", "rest results", "canary rollback")


@dataclass(frozen=True)
class _Target:
    """The payload being rolled out."""

    task: str
    version: int
    digest: str


@dataclass
class _Device:
    device_id: str
    group: str
    role: str  # canary / rest
    published_at: float | None = None
    verdict: Verdict | None = None
    answered_at: float | None = None
    result: TaskResultMessage | None = None  # kept: a rolled-back device clears its result
    rolled_back_at: float | None = None


def run_rollout(
    payload: bytes,
    *,
    options: BrokerOptions,
    canary: Sequence[str],
    rest: Sequence[str],
    signing_key: SigningKey,
    threshold: Threshold | None = None,
    timeout_s: float = 600.0,
    on_timeout: OnTimeout = "abort",
    simulated: Mapping[str, float] | None = None,
    devices: Mapping[str, Sequence[str]] | None = None,
    base_topic: str = "plada",
    ha_prefix: str = DEFAULT_PREFIX,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    trusted_keys: Mapping[str, Ed25519PublicKey] | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    poll_s: float = 0.5,
) -> RolloutRecord:
    """Roll ``payload`` out to ``canary`` then ``rest`` (see the module docstring); returns the
    record. ``simulated``: device class -> the builder's simulated accuracy (report.json
    ``devices``). Raises RolloutError when it cannot start (nothing is published then),
    PublishRefusedError / PublishError like `publish_payload`."""
    plan = _Plan(
        options=options,
        canary=canary,
        rest=rest,
        threshold=threshold or Threshold(),
        timeout_s=timeout_s,
        on_timeout=on_timeout,
        simulated=dict(simulated or {}),
        base_topic=base_topic,
        ha_prefix=ha_prefix,
        max_chunk_bytes=max_chunk_bytes,
        trusted_keys=trusted_keys,
        force=force,
        poll_s=poll_s,
    )
    _check_plan(plan)
    target, revocation = _prepare(payload, signing_key=signing_key, trusted_keys=trusted_keys)
    started = time.time()
    with FleetWatch(options) as watch:
        run = _Rollout(payload, plan, target, watch, progress)
        run.enrol(devices)
        restore = run.retained_payloads()  # the canary groups' previous payload: an abort's restore
        run.publish(plan.canary)
        decision = run.judge_canary(deadline=time.time() + timeout_s)
        decided_at = time.time()
        revoked: list[RevokeReport] = []
        if decision.outcome == "promoted":
            run.promote(deadline=decided_at + timeout_s)
        else:
            revoked = run.abort(revocation, restore, deadline=decided_at + timeout_s)
        retained = watch.messages()
    return run.record(
        retained,
        decision,
        started_at=started,
        decided_at=decided_at,
        revocation_id=payload_digest(revocation) if revoked else None,
        revoked=revoked,
    )


@dataclass(frozen=True)
class _Plan:
    """run_rollout's settings, as every stage reads them."""

    options: BrokerOptions
    canary: Sequence[str]
    rest: Sequence[str]
    threshold: Threshold
    timeout_s: float
    on_timeout: OnTimeout
    simulated: Mapping[str, float]  # device class -> the builder's simulated accuracy
    base_topic: str
    ha_prefix: str
    max_chunk_bytes: int
    trusted_keys: Mapping[str, Ed25519PublicKey] | None
    force: bool
    poll_s: float


def _check_plan(plan: _Plan) -> None:
    _check_groups(plan.canary, plan.rest)
    if plan.timeout_s <= 0:
        raise RolloutError(f"timeout {plan.timeout_s:g} s: must be positive")


def _prepare(
    payload: bytes,
    *,
    signing_key: SigningKey,
    trusted_keys: Mapping[str, Ed25519PublicKey] | None,
) -> tuple[_Target, bytes]:
    """The payload checked as `plada-build publish` would, and the signed revocation an abort
    needs, made first so that a missing or wrong key fails before anything is published."""
    info = check_publishable(payload, trusted_keys=trusted_keys)
    target = _Target(info.payload.task, info.payload.version, info.digest)
    revocation = encode_revocation(
        make_revocation(target.task, target.version, target.digest, note="staged rollout aborted"),
        signing_key=signing_key,
    )
    check_revocation(revocation, trusted_keys=trusted_keys)  # the key the devices trust
    return target, revocation


class _Rollout:
    """One rollout's stages on a live FleetWatch; each device's progress is kept on its _Device."""

    def __init__(
        self,
        payload: bytes,
        plan: _Plan,
        target: _Target,
        watch: FleetWatch,
        progress: ProgressFn | None,
    ) -> None:
        self._payload = payload
        self._plan = plan
        self._target = target
        self._watch = watch
        self._topics = TopicScheme(plan.base_topic)
        self._report = progress or (lambda phase, done, total: None)
        self._fleet: dict[str, _Device] = {}
        self._canaries: list[_Device] = []

    def enrol(self, listed: Mapping[str, Sequence[str]] | None) -> None:
        """Follow the fleet's topics and take its devices of the rollout's groups."""
        plan, topics = self._plan, self._topics
        self._watch.follow(
            topics.all_status_filter(),
            topics.all_availability_filter(),
            topics.all_results_filter(self._target.task),
            discovery_filter(plan.ha_prefix),
        )
        members = _members(self._watch.messages(), topics, [*plan.canary, *plan.rest], listed)
        self._fleet = {
            d: _Device(d, g, "canary" if g in plan.canary else "rest") for d, g in members.items()
        }
        self._canaries = [d for d in self._fleet.values() if d.role == "canary"]
        if not self._canaries:
            raise RolloutError(
                f"no device in the canary group(s) {', '.join(plan.canary)}: no retained status "
                "names them (agents report their group) and none was listed"
            )

    def retained_payloads(self) -> dict[str, dict[str, bytes]]:
        """Canary group -> what it retains of the task now."""
        plan = self._plan
        return {
            g: retained_payload(
                plan.options, group=g, task=self._target.task, base_topic=plan.base_topic
            )
            for g in plan.canary
        }

    def publish(self, groups: Sequence[str]) -> None:
        """The payload to ``groups`` exactly as `plada-build publish` does (same checks)."""
        plan = self._plan
        for group in groups:
            publish_payload(
                self._payload,
                options=plan.options,
                group=group,
                base_topic=plan.base_topic,
                max_chunk_bytes=plan.max_chunk_bytes,
                check=True,
                trusted_keys=plan.trusted_keys,
                force=plan.force,
            )
            now = time.time()
            for device in self._fleet.values():
                if device.group == group:
                    device.published_at = now

    def judge_canary(self, *, deadline: float) -> Decision:
        """Wait on the canary devices until the decision is certain (or the deadline)."""
        on_timeout = self._plan.on_timeout

        def certain(verdicts: Mapping[str, Verdict | None], timed_out: bool) -> bool:
            return decide(verdicts, on_timeout=on_timeout, timed_out=timed_out) is not None

        canaries = self._canaries
        verdicts, timed_out = self._await_verdicts(
            canaries,
            deadline=deadline,
            finished=certain,
            tick=lambda done: self._report(PHASES[0], done, len(canaries)),
        )
        decision = decide(verdicts, on_timeout=on_timeout, timed_out=timed_out)
        assert decision is not None  # noqa: S101 (the wait ends only once it is certain)
        return decision

    def promote(self, *, deadline: float) -> None:
        """The payload to the rest group(s); their results are awaited for the record."""
        self.publish(self._plan.rest)
        others = [d for d in self._fleet.values() if d.role == "rest"]
        self._await_verdicts(
            others,
            deadline=deadline,
            finished=_all_judged,
            tick=lambda done: self._report(PHASES[1], done, len(others)),
        )

    def abort(
        self, revocation: bytes, restore: Mapping[str, Mapping[str, bytes]], *, deadline: float
    ) -> list[RevokeReport]:
        """Revoke the version in the canary group(s), put back what they retained before, and
        wait until their devices no longer serve it. The rest never receive the task."""
        plan = self._plan
        revoked = [
            revoke_version(
                revocation,
                options=plan.options,
                group=g,
                base_topic=plan.base_topic,
                trusted_keys=plan.trusted_keys,
                restore=restore[g],
            )
            for g in plan.canary
        ]
        self._await_rollback(
            deadline=deadline, tick=lambda done, total: self._report(PHASES[2], done, total)
        )
        return revoked

    def record(
        self,
        retained: Mapping[str, bytes],
        decision: Decision,
        *,
        started_at: float,
        decided_at: float,
        revocation_id: str | None,
        revoked: Sequence[RevokeReport],
    ) -> RolloutRecord:
        plan, target = self._plan, self._target
        outcomes = [
            _outcome(
                d, retained, self._topics, target, plan.simulated, plan.threshold, plan.ha_prefix
            )
            for d in sorted(self._fleet.values(), key=lambda d: (d.role != "canary", d.device_id))
        ]
        return RolloutRecord(
            task=target.task,
            version=target.version,
            payload_id=target.digest,
            canary_groups=list(plan.canary),
            rest_groups=list(plan.rest),
            threshold=ThresholdRecord(
                min_accuracy=plan.threshold.min_accuracy, min_fraction=plan.threshold.min_fraction
            ),
            timeout_s=plan.timeout_s,
            on_timeout=plan.on_timeout,
            outcome=decision.outcome,
            reason=decision.reason,
            started_at=started_at,
            decided_at=decided_at,
            finished_at=time.time(),
            revocation_id=revocation_id,
            revoked=[
                RevokedGroup(group=r.group, topic=r.topic, cleared=r.cleared, restored=r.restored)
                for r in revoked
            ],
            devices=outcomes,
        )

    def _update(self, device: _Device, retained: Mapping[str, bytes], *, timed_out: bool) -> None:
        """Judge the device on what it reported so far; its result is kept once seen."""
        topics, target = self._topics, self._target
        obs = _observe(retained, topics, device.device_id, target)
        if device.result is not None:  # answered before (its result may be cleared since)
            obs = Observation(answered=True, accuracy=device.result.probe_accuracy)
        device.verdict = judge(obs, required=self._required(device), timed_out=timed_out)
        if obs.answered and device.result is None:
            device.result = _result(retained, topics, device.device_id, target)
            device.answered_at = self._watch.arrived_at.get(
                topics.result(device.device_id, target.task)
            )

    def _await_verdicts(
        self,
        devices: Sequence[_Device],
        *,
        deadline: float,
        finished: Callable[[Mapping[str, Verdict | None], bool], bool],
        tick: Callable[[int], None],
    ) -> tuple[dict[str, Verdict | None], bool]:
        """Judge ``devices`` as their results come in until ``finished(verdicts, timed_out)``;
        each device's verdict, result and the time its answer arrived are kept on it. Returns the
        last verdicts and whether the deadline had passed."""
        while True:
            retained = self._watch.messages()
            timed_out = time.time() >= deadline
            for device in devices:
                self._update(device, retained, timed_out=timed_out)
            tick(sum(d.verdict is not None for d in devices))
            verdicts = {d.device_id: d.verdict for d in devices}
            if finished(verdicts, timed_out):
                return verdicts, timed_out
            self._watch.wait(min(self._plan.poll_s, max(0.0, deadline - time.time())))

    def _await_rollback(self, *, deadline: float, tick: Callable[[int, int], None]) -> None:
        """Until no canary device serves or installs the revoked version (their status says so),
        or the deadline. A device still installing it when the abort was decided may yet answer:
        it is judged too. An offline one rolls back when it reconnects (the revocation is
        retained); it is left with ``rolled_back_at`` None. ``rolled_back_at``: when the status
        of a device that had installed the version showed it serving something else."""
        canaries, topics, target = self._canaries, self._topics, self._target
        while True:
            retained = self._watch.messages()
            for device in canaries:
                if device.verdict is None:
                    self._update(device, retained, timed_out=False)
            clean = {d.device_id: _clean(retained, topics, d.device_id, target) for d in canaries}
            for device in canaries:
                if device.result is not None and clean[device.device_id]:
                    if device.rolled_back_at is None:
                        device.rolled_back_at = self._watch.arrived_at.get(
                            topics.status(device.device_id)
                        )
            tick(sum(clean.values()), len(canaries))
            if all(clean.values()) or time.time() >= deadline:
                for device in canaries:
                    if device.verdict is None:
                        device.verdict = "not_judged"
                return
            self._watch.wait(min(self._plan.poll_s, max(0.0, deadline - time.time())))

    def _required(self, device: _Device) -> float | None:
        """The accuracy the device must report: the threshold applied to its class's simulation."""
        device_class = _device_class(self._watch, self._topics, device)
        return self._plan.threshold.required(self._plan.simulated.get(device_class or ""))


def _check_groups(canary: Sequence[str], rest: Sequence[str]) -> None:
    if not canary:
        raise RolloutError("a staged rollout needs at least one canary group")
    both = sorted(set(canary) & set(rest))
    if both:
        raise RolloutError(f"group(s) {', '.join(both)} are both canary and rest")
    for group in [*canary, *rest]:
        try:
            TopicScheme().task(group)
        except ValueError as exc:
            raise RolloutError(str(exc)) from exc


def _members(
    retained: Mapping[str, bytes],
    topics: TopicScheme,
    groups: Sequence[str],
    listed: Mapping[str, Sequence[str]] | None,
) -> dict[str, str]:
    """Device id -> group, for the devices of ``groups``: by their retained status, then the
    listed ones (a listed device's group wins: the operator said so)."""
    members: dict[str, str] = {}
    for topic, body in retained.items():
        parsed = topics.parse(topic)
        if parsed is None or parsed.kind is not TopicKind.STATUS or parsed.device_id is None:
            continue
        status = parse_message(DeviceStatus, body, topic)
        if status is not None and status.group is not None and status.group in groups:
            members[parsed.device_id] = status.group
    for group, ids in (listed or {}).items():
        if group not in groups:
            raise RolloutError(f"devices listed for group {group!r}, which is not in the rollout")
        for device_id in ids:
            members[device_id] = group
    return members


def _status(
    retained: Mapping[str, bytes], topics: TopicScheme, device_id: str
) -> DeviceStatus | None:
    topic = topics.status(device_id)
    return parse_message(DeviceStatus, retained.get(topic, b""), topic)


def _result(
    retained: Mapping[str, bytes], topics: TopicScheme, device_id: str, target: _Target
) -> TaskResultMessage | None:
    """The device's result for this very payload (an older version's result is not an answer)."""
    topic = topics.result(device_id, target.task)
    result = parse_message(TaskResultMessage, retained.get(topic, b""), topic)
    if result is None or result.version != target.version:
        return None
    if result.payload_id is not None and result.payload_id != target.digest:
        return None
    return result


def _device_class(watch: FleetWatch, topics: TopicScheme, device: _Device) -> str | None:
    status = _status(watch.messages(), topics, device.device_id)
    return status.device_class if status is not None else None


def _refused(status: DeviceStatus | None, target: _Target) -> bool:
    """The device reported a payload fault for this payload (it will never install it)."""
    if status is None:
        return False
    task = status.tasks.get(target.task)
    errors = [status.last_error, task.last_error if task is not None else None]
    return any(
        e is not None and e.fault == "payload" and e.payload_id == target.digest for e in errors
    )


def _observe(
    retained: Mapping[str, bytes], topics: TopicScheme, device_id: str, target: _Target
) -> Observation:
    result = _result(retained, topics, device_id, target)
    return Observation(
        answered=result is not None,
        accuracy=result.probe_accuracy if result is not None else None,
        refused=_refused(_status(retained, topics, device_id), target),
    )


def _all_judged(verdicts: Mapping[str, Verdict | None], timed_out: bool) -> bool:
    """The rest's wait: every device judged (or the deadline); no failure ends it early."""
    return timed_out or all(v is not None for v in verdicts.values())


def _task_state(
    retained: Mapping[str, bytes], topics: TopicScheme, device_id: str, task: str
) -> TaskState | None:
    status = _status(retained, topics, device_id)
    return status.tasks.get(task) if status is not None else None


def _serving(
    retained: Mapping[str, bytes], topics: TopicScheme, device_id: str, task: str
) -> int | None:
    entry = _task_state(retained, topics, device_id, task)
    return entry.version if entry is not None else None


def _clean(
    retained: Mapping[str, bytes], topics: TopicScheme, device_id: str, target: _Target
) -> bool:
    """The device's status neither serves the revoked version nor is installing it."""
    entry = _task_state(retained, topics, device_id, target.task)
    if entry is None:
        return True
    return entry.version != target.version and entry.latest_version != (
        f"{target.task}@{target.version}"
    )


def _outcome(
    device: _Device,
    retained: Mapping[str, bytes],
    topics: TopicScheme,
    target: _Target,
    simulated: Mapping[str, float],
    threshold: Threshold,
    ha_prefix: str,
) -> DeviceOutcome:
    status = _status(retained, topics, device.device_id)
    result = device.result
    device_class = (status.device_class if status else None) or (
        result.device_class if result else None
    )
    sim = simulated.get(device_class or "")
    return DeviceOutcome(
        device_id=device.device_id,
        group=device.group,
        role="canary" if device.role == "canary" else "rest",
        device_class=device_class,
        verdict=device.verdict,
        reported_accuracy=result.probe_accuracy if result else None,
        simulated_accuracy=sim,
        required_accuracy=threshold.required(sim),
        probe_size=result.probe_size if result else None,
        reported_version=result.version if result else None,
        installed_version=_serving(retained, topics, device.device_id, target.task),
        published_at=device.published_at,
        answered_at=device.answered_at,
        device_finished_at=result.finished_at if result else None,
        time_to_model_s=result.time_to_model_s if result else None,
        rolled_back_at=device.rolled_back_at,
        home_assistant=home_assistant_view(
            retained, device_id=device.device_id, task=target.task, prefix=ha_prefix
        ),
    )
