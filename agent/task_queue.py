"""The tasks accepted but not yet installed, durably, one per task.

`offer` verifies a complete payload once (with the keys the daemon was given) and asks the version
policy (agent.versions) against the model store's record. A payload fault refuses it for good;
otherwise its bytes go to ``pending/<payload id>.bin`` and the task is queued in the fleet state
(agent.fleet_state) before the message is acknowledged. A newer version supersedes a waiting one.

A device fault (agent.faults) keeps the task queued with a back-off (`[recovery]` retry_min_s
doubling up to retry_max_s); `poke` makes deferred tasks due at once when the fault's cause may be
gone. At start-up a task still marked in progress is an attempt the process did not survive
(kill -9, OOM, power loss): a device fault too. A fleet state that cannot be read was moved aside
(agent.fleet_state); the pending files are queued again from disk.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import AlreadyInstalledError, ModelStoreError, TaskTopicError
from agent.fault_report import FaultReporter
from agent.faults import Fault, FaultClass, classify, interrupted, retry_delay_s
from agent.fleet_state import FleetState, PendingTask, load_state
from agent.pipeline import VerifiedPayload, verify_payload
from agent.versions import check_capacity, check_installable
from plada.atomic import write_bytes_atomic
from plada.errors import PayloadLimitError
from plada.payload import payload_digest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.config import AgentConfig
    from agent.models import ModelStore

logger = logging.getLogger(__name__)


class TaskQueue:
    def __init__(
        self,
        config: AgentConfig,
        *,
        folder: Path,
        store: ModelStore,
        keys: Mapping[str, Ed25519PublicKey],
        reporter: FaultReporter,
    ) -> None:
        self.config = config
        self.store = store
        self.keys = dict(keys)
        self.reporter = reporter
        self.triallog = reporter.triallog
        self.clock = reporter.clock
        self.state_path = folder / "state.json"
        self.pending_dir = folder / "pending"
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self._verified: dict[str, VerifiedPayload] = {}  # payload id -> decoded once
        self.state = self._restore(folder)

    # -- start-up ---------------------------------------------------------------------------------
    def _restore(self, folder: Path) -> FleetState:
        loaded = load_state(self.state_path)
        state = loaded.state
        self.state = state
        if self.store.rebuild() is not None:
            self._startup_fault(
                "ModelStoreError", "model store state unreadable: rebuilt from entries"
            )
        for task, (version, digest) in loaded.floors.items():
            self.store.raise_floor(task, version=version, digest=digest)
        legacy = folder / "pending.bin"
        if loaded.legacy_pending and legacy.is_file():
            legacy.replace(self.pending_dir / f"{loaded.legacy_pending['payload_id']}.bin")
        listed = {p.payload_id for p in state.pending.values()}
        for path in sorted(self.pending_dir.glob("*.bin")):
            if path.stem not in listed:  # the state was rebuilt, migrated or lost track of it
                self._readmit(path)
        if loaded.problem is not None:
            self._startup_fault("FleetStateError", loaded.problem)
        now = self.clock()
        for pending in state.pending.values():
            if pending.in_progress:
                self._interrupted(pending, now)
            else:  # deferred by a device fault: a restart may be the fix, so try again now
                pending.next_attempt_at = 0.0
        state.save(self.state_path)
        return state

    def _startup_fault(self, code: str, message: str) -> None:
        hint = "nothing to do: the agent recovered by itself"
        self.reporter.report(Fault(FaultClass.DEVICE, code, message, hint))

    def _readmit(self, path: Path) -> None:
        """Queue a pending file again (after the state was rebuilt); drop it if it is no good."""
        try:
            data = path.read_bytes()
            verified = self._verify(data)
            check_installable(
                self.store.task_record(verified.task),
                task=verified.task,
                version=verified.version,
                digest=verified.digest,
            )
        except Exception as exc:
            logger.warning("pending copy %s dropped: %s", path.name, exc)
            path.unlink(missing_ok=True)
            return
        self._queue(verified, first_byte_at=path.stat().st_mtime)

    def _interrupted(self, pending: PendingTask, now: float) -> None:
        fault = interrupted(pending.task, pending.version, pending.attempts)
        pending.in_progress = False
        pending.failures += 1
        # The first interruption is most likely a reboot or a kill from outside: retry at once.
        self._defer(pending, fault, now, delay_failures=pending.failures - 1)

    # -- queries ----------------------------------------------------------------------------------
    def known(self, payload_id: str) -> bool:
        """Installed, queued, or refused for good: nothing to do on another delivery."""
        if payload_id in self.state.rejected or self.state.pending_by_id(payload_id):
            return True
        try:
            records = self.store.records()
        except ModelStoreError:
            return False
        return any(r.payload_digest == payload_id for r in records.values())

    def next_due(self) -> PendingTask | None:
        now = self.clock()
        due = [p for p in self.state.pending.values() if p.next_attempt_at <= now]
        return min(due, key=lambda p: p.first_byte_at) if due else None

    def view(self) -> list[dict[str, Any]]:
        """The queue as status shows it."""
        now = self.clock()
        rows = []
        for p in sorted(self.state.pending.values(), key=lambda p: p.first_byte_at):
            fault = p.last_fault
            rows.append(
                {
                    "task": p.task,
                    "version": p.version,
                    "attempts": p.attempts,
                    "failures": p.failures,
                    "retry_in_s": round(max(0.0, p.next_attempt_at - now), 1),
                    "cause": f"{fault.code}: {fault.message}" if fault else None,
                }
            )
        return rows

    def poke(self) -> None:
        """A fault's cause may be gone (files changed): retry deferred tasks now."""
        for pending in self.state.pending.values():
            if pending.failures:
                pending.next_attempt_at = 0.0
        self.state.save(self.state_path)

    # -- receiving --------------------------------------------------------------------------------
    def _verify(self, data: bytes) -> VerifiedPayload:
        limit = self.config.mqtt.max_payload_bytes
        if len(data) > limit:
            raise PayloadLimitError(
                f"payload: {len(data)} bytes over mqtt.max_payload_bytes ({limit})"
            )
        return verify_payload(
            data, trusted_keys=self.keys, allow_unsigned=self.config.trust.allow_unsigned
        )

    def offer(self, data: bytes, *, first_byte_at: float, topic_task: str | None = None) -> None:
        """Decide on a complete payload: queue it durably, refuse it, or ignore it.

        `topic_task`: the task whose topic the payload came on (None: the one-task scheme, or
        reassembled chunks); a payload of another task is refused, so one task's retained
        message can never stand in for another's."""
        payload_id = payload_digest(data)
        if self.known(payload_id):
            logger.info("payload %s already handled; nothing to do", payload_id[:12])
            return
        task: str | None = None
        version: int | None = None
        try:
            verified = self._verify(data)
            task, version = verified.task, verified.version
            if topic_task is not None and task != topic_task:
                raise TaskTopicError(
                    f"task: the payload is task {task!r} but came on the topic of task "
                    f"{topic_task!r}"
                )
            waiting = self.state.pending.get(task)
            check_installable(
                self.store.task_record(task),
                task=task,
                version=version,
                digest=payload_id,
                pending_version=waiting.version if waiting else None,
            )
            check_capacity(self.store.records(), task=task, max_tasks=self.config.state.max_tasks)
        except AlreadyInstalledError:
            return
        except Exception as exc:
            fault = classify(exc)
            if fault.is_payload:
                self.refuse(fault, payload_id=payload_id, task=task, version=version)
                return
            if task is None:  # cannot even read the payload on this device: wait for redelivery
                self._report(fault, payload_id=payload_id)
                return
            # The policy could not be checked (the store is unreadable): queue it; the install
            # checks the policy again.
        write_bytes_atomic(self.pending_dir / f"{payload_id}.bin", data)
        self._queue(verified, first_byte_at=first_byte_at)
        self.state.save(self.state_path)
        self.triallog.record_task(
            payload_id=payload_id,
            outcome="received",
            task=task,
            version=version,
            first_byte_at=first_byte_at,
        )
        logger.info("task %s v%s accepted (payload %s)", task, version, payload_id[:12])

    def _queue(self, verified: VerifiedPayload, *, first_byte_at: float) -> None:
        old = self.state.pending.get(verified.task)
        if old is not None and old.payload_id != verified.digest:
            (self.pending_dir / f"{old.payload_id}.bin").unlink(missing_ok=True)
            self._verified.pop(old.payload_id, None)
            self.triallog.record_task(payload_id=old.payload_id, outcome="superseded")
            self.triallog.record_event(
                kind="superseded",
                payload_id=old.payload_id,
                task=old.task,
                version=old.version,
                message=f"replaced by v{verified.version} before it was installed",
            )
        self._verified[verified.digest] = verified
        self.state.pending[verified.task] = PendingTask(
            payload_id=verified.digest,
            task=verified.task,
            version=verified.version,
            first_byte_at=first_byte_at,
        )

    def verified(self, pending: PendingTask) -> VerifiedPayload | None:
        """The pending payload, decoded once on arrival; after a restart read from disk and
        verified again (the file could be damaged, or the payload expired while it waited)."""
        if pending.payload_id in self._verified:
            return self._verified[pending.payload_id]
        path = self.pending_dir / f"{pending.payload_id}.bin"
        try:
            data = path.read_bytes()
        except OSError as exc:
            data, problem = b"", f"unreadable ({exc.strerror})"
        else:
            problem = "damaged"
        if payload_digest(data) != pending.payload_id:
            # Not the payload's fault: forget the copy so the broker's next delivery is taken.
            self.drop(pending)
            fault = Fault(
                FaultClass.DEVICE,
                "PendingCopyError",
                f"the stored copy of {pending.task} v{pending.version} is {problem}",
                "nothing to do: it is taken again when the broker delivers it again",
            )
            self._report(
                fault, payload_id=pending.payload_id, task=pending.task, version=pending.version
            )
            return None
        try:
            verified = self._verify(data)
        except Exception as exc:
            self.fail(pending, classify(exc))
            return None
        self._verified[pending.payload_id] = verified
        return verified

    def fail(self, pending: PendingTask, fault: Fault) -> None:
        """An attempt failed: refuse the payload for good, or defer the task (device fault)."""
        pending.in_progress = False
        if fault.is_payload:
            self.drop(pending)
            self.refuse(
                fault, payload_id=pending.payload_id, task=pending.task, version=pending.version
            )
            return
        pending.failures += 1
        self._defer(pending, fault, self.clock(), delay_failures=pending.failures)

    def _defer(
        self, pending: PendingTask, fault: Fault, now: float, *, delay_failures: int
    ) -> None:
        """Keep the task queued after a device fault; report it; retry after the back-off."""
        delay = retry_delay_s(
            delay_failures,
            min_s=self.config.recovery.retry_min_s,
            max_s=self.config.recovery.retry_max_s,
            key=f"{self.config.device_id}:{pending.payload_id}",
        )
        pending.next_attempt_at = now + delay
        pending.last_fault = self.reporter.report(
            fault,
            payload_id=pending.payload_id,
            task=pending.task,
            version=pending.version,
            outcome="deferred",
            message=f"{fault.message} (retry in {delay:.0f} s)" if delay else None,
        )
        self.state.last_error = pending.last_fault
        self.state.save(self.state_path)

    def drop(self, pending: PendingTask) -> None:
        """The task left the queue (installed or refused): forget it and its file."""
        if self.state.pending.get(pending.task) is pending:
            del self.state.pending[pending.task]
        (self.pending_dir / f"{pending.payload_id}.bin").unlink(missing_ok=True)
        self._verified.pop(pending.payload_id, None)
        self.state.save(self.state_path)

    def refuse(
        self, fault: Fault, *, payload_id: str, task: str | None = None, version: int | None = None
    ) -> None:
        """A payload fault: remember the payload (never tried again, unless the fault says a
        later delivery may succeed: the task bound) and report why."""
        if fault.remember:
            self.state.reject(payload_id)
        self._report(fault, payload_id=payload_id, task=task, version=version, outcome="rejected")

    def _report(
        self,
        fault: Fault,
        *,
        payload_id: str | None = None,
        task: str | None = None,
        version: int | None = None,
        outcome: str | None = None,
    ) -> None:
        self.state.last_error = self.reporter.report(
            fault, payload_id=payload_id, task=task, version=version, outcome=outcome
        )
        self.state.save(self.state_path)

    def save(self) -> None:
        self.state.save(self.state_path)
