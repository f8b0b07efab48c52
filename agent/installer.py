"""From an accepted payload to an installed task, whatever goes wrong on the way.

`offer` verifies a complete payload once (with the keys the daemon was given) and asks the version
policy (agent.versions) against the model store's record. A payload fault refuses it for good;
otherwise its bytes go to ``pending/<payload id>.bin`` and the task is queued in the fleet state
before the message is acknowledged. There is one queued payload per task: a newer version
supersedes a waiting one.

`run_due` installs the oldest queued task that is due, passing the verified payload down. A device
fault (agent.faults) keeps the task queued with a back-off (`[recovery]` retry_min_s doubling up to
retry_max_s) and the installed models serving; `poke` retries at once when the fault's cause may
be gone. An attempt is marked in progress on disk before it starts: one still marked at start-up
is an attempt the process did not survive (kill -9, OOM, power loss), a device fault too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agent.errors import AlreadyInstalledError, ModelStoreError
from agent.faults import Fault, FaultClass, classify, interrupted, retry_delay_s
from agent.fleet_state import FleetState, PendingTask, load_state
from agent.pipeline import VerifiedPayload, verify_payload
from agent.status import LastError
from agent.versions import check_installable
from plada.atomic import write_bytes_atomic
from plada.errors import PayloadLimitError
from plada.payload import payload_digest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from agent.config import AgentConfig
    from agent.models import ModelStore
    from agent.triallog import TrialLog

logger = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]


class Applied(Protocol):
    """What an applier returns (agent.pipeline.AppliedTask has these attributes)."""

    @property
    def task(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def num_indices(self) -> int: ...
    @property
    def train_seconds(self) -> float: ...
    @property
    def train_accuracy(self) -> float: ...


class Applier(Protocol):
    """Installs a verified payload into the store (the real one wraps agent.pipeline)."""

    def apply(
        self, verified: VerifiedPayload, *, store: ModelStore, progress: ProgressFn
    ) -> Applied: ...


class InstallerEvents(Protocol):
    """What the daemon shows while the installer works (status, results)."""

    def on_progress(self, task: str, version: int, fraction: float, stage: str) -> None: ...
    def on_fault(self, error: LastError) -> None: ...
    def on_installed(
        self, pending: PendingTask, applied: Applied | None, ready_at: float
    ) -> None: ...


class Installer:
    def __init__(
        self,
        config: AgentConfig,
        *,
        folder: Path,
        store: ModelStore,
        applier: Applier,
        keys: Mapping[str, Ed25519PublicKey],
        triallog: TrialLog,
        events: InstallerEvents,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.applier = applier
        self.keys = dict(keys)
        self.triallog = triallog
        self.events = events
        self.clock = clock
        self.state_path = folder / "state.json"
        self.pending_dir = folder / "pending"
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        self._verified: dict[str, VerifiedPayload] = {}  # payload id -> decoded once
        self.startup_faults: list[LastError] = []
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
        error = LastError(
            code=code,
            message=message,
            at=self.clock(),
            fault="device",
            hint="nothing to do: the agent recovered by itself",
        )
        self.startup_faults.append(error)
        self.triallog.record_event(kind="fault", fault="device", code=code, message=message)

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
        self.startup_faults.append(self._error(pending, fault, now))

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

    def offer(self, data: bytes, *, first_byte_at: float) -> None:
        """Decide on a complete payload: queue it durably, refuse it, or ignore it."""
        payload_id = payload_digest(data)
        if self.known(payload_id):
            logger.info("payload %s already handled; nothing to do", payload_id[:12])
            return
        task: str | None = None
        version: int | None = None
        try:
            verified = self._verify(data)
            task, version = verified.task, verified.version
            waiting = self.state.pending.get(task)
            check_installable(
                self.store.task_record(task),
                task=task,
                version=version,
                digest=payload_id,
                pending_version=waiting.version if waiting else None,
            )
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

    # -- installing -------------------------------------------------------------------------------
    def run_due(self) -> bool:
        """Attempt the oldest due task, if any; True if one was attempted."""
        pending = self.next_due()
        if pending is None:
            return False
        try:
            record = self.store.task_record(pending.task)
        except ModelStoreError as exc:
            self._failed(pending, classify(exc))
            return True
        if record is not None and record.payload_digest == pending.payload_id:
            logger.info(
                "%s v%s was stored before a restart; not retraining", pending.task, pending.version
            )
            self._done(pending, applied=None)
            return True
        verified = self._verified.get(pending.payload_id) or self._reload(pending)
        if verified is None:
            return True
        pending.attempts += 1
        pending.in_progress = True
        self.state.save(self.state_path)

        def progress(fraction: float, stage: str) -> None:
            self.events.on_progress(pending.task, pending.version, fraction, stage)

        progress(0.0, "starting")
        try:
            applied = self.applier.apply(verified, store=self.store, progress=progress)
        except Exception as exc:
            fault = classify(exc)
            if not fault.is_payload:
                logger.warning(
                    "installing %s v%s failed", pending.task, pending.version, exc_info=exc
                )
            self._failed(pending, fault)
            return True
        self._done(pending, applied=applied)
        return True

    def _reload(self, pending: PendingTask) -> VerifiedPayload | None:
        """The pending payload from disk after a restart, verified again (the file could be
        damaged, or the payload expired while it waited)."""
        path = self.pending_dir / f"{pending.payload_id}.bin"
        try:
            data = path.read_bytes()
        except OSError as exc:
            data, problem = b"", f"unreadable ({exc.strerror})"
        else:
            problem = "damaged"
        if payload_digest(data) != pending.payload_id:
            # Not the payload's fault: forget the copy so the broker's next delivery is taken.
            self._drop_pending(pending)
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
            return self._verify(data)
        except Exception as exc:
            self._failed(pending, classify(exc))
            return None

    def _failed(self, pending: PendingTask, fault: Fault) -> None:
        pending.in_progress = False
        if fault.is_payload:
            self._drop_pending(pending)
            self.refuse(
                fault, payload_id=pending.payload_id, task=pending.task, version=pending.version
            )
            return
        pending.failures += 1
        self._defer(pending, fault, self.clock(), delay_failures=pending.failures)
        self.state.save(self.state_path)
        self._report(
            fault,
            payload_id=pending.payload_id,
            task=pending.task,
            version=pending.version,
            outcome="deferred",
        )

    def _defer(
        self, pending: PendingTask, fault: Fault, now: float, *, delay_failures: int
    ) -> None:
        delay = retry_delay_s(
            delay_failures,
            min_s=self.config.recovery.retry_min_s,
            max_s=self.config.recovery.retry_max_s,
            key=f"{self.config.device_id}:{pending.payload_id}",
        )
        pending.next_attempt_at = now + delay
        pending.last_fault = self._error(pending, fault, now)
        if fault.code != "AgentInterrupted" or delay:
            logger.warning(
                "%s v%s deferred %.0f s: %s: %s",
                pending.task,
                pending.version,
                delay,
                fault.code,
                fault.message,
            )
        self.triallog.record_event(
            kind="fault",
            payload_id=pending.payload_id,
            task=pending.task,
            version=pending.version,
            fault="device",
            code=fault.code,
            message=fault.message,
        )

    def _done(self, pending: PendingTask, *, applied: Applied | None) -> None:
        ready_at = self.clock()
        self._drop_pending(pending)
        self.triallog.record_task(
            payload_id=pending.payload_id,
            outcome="ready",
            ready_at=ready_at,
            train_seconds=applied.train_seconds if applied else None,
        )
        if applied is not None:
            self.triallog.record_event(
                kind="installed",
                payload_id=pending.payload_id,
                task=pending.task,
                version=pending.version,
            )
        self.events.on_installed(pending, applied, ready_at)
        logger.info("task %s v%s ready", pending.task, pending.version)

    def _drop_pending(self, pending: PendingTask) -> None:
        if self.state.pending.get(pending.task) is pending:
            del self.state.pending[pending.task]
        (self.pending_dir / f"{pending.payload_id}.bin").unlink(missing_ok=True)
        self._verified.pop(pending.payload_id, None)
        self.state.save(self.state_path)

    # -- reporting --------------------------------------------------------------------------------
    def _error(self, pending: PendingTask, fault: Fault, now: float) -> LastError:
        return LastError(
            code=fault.code,
            message=fault.message,
            at=now,
            task=pending.task,
            version=pending.version,
            payload_id=pending.payload_id,
            fault=fault.fault_class.value,
            hint=fault.hint,
        )

    def refuse(
        self, fault: Fault, *, payload_id: str, task: str | None = None, version: int | None = None
    ) -> None:
        """A payload fault: remember the payload (never tried again) and report why."""
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
        error = LastError(
            code=fault.code,
            message=fault.message,
            at=self.clock(),
            task=task,
            version=version,
            payload_id=payload_id,
            fault=fault.fault_class.value,
            hint=fault.hint,
        )
        logger.warning(
            "%s fault%s: %s: %s",
            fault.fault_class.value,
            f" on payload {payload_id[:12]}" if payload_id else "",
            fault.code,
            fault.message,
        )
        self.state.last_error = error
        self.state.save(self.state_path)
        if outcome is not None and payload_id is not None:
            self.triallog.record_task(
                payload_id=payload_id,
                outcome=outcome,
                task=task,
                version=version,
                error=f"{fault.code}: {fault.message}",
            )
        if outcome != "deferred":  # deferred faults were logged as events by _defer
            self.triallog.record_event(
                kind="fault",
                payload_id=payload_id,
                task=task,
                version=version,
                fault=fault.fault_class.value,
                code=fault.code,
                message=fault.message,
            )
        self.events.on_fault(error)
