"""Installs the queued task that is due (agent.task_queue), whatever goes wrong on the way.

The verified payload is passed down to the applier (agent.pipeline in the daemon), never decoded
again. An attempt is marked in progress on disk before it starts, so one the process does not
survive is known at the next start. A failure is classified (agent.faults): the queue refuses the
payload for good, or defers the task with a back-off while the installed models keep serving.
"""

from __future__ import annotations

import logging

from agent.errors import ModelStoreError
from agent.faults import classify
from agent.fleet_state import PendingTask
from agent.models import ModelStore
from agent.ports import Applied, Applier, InstallerEvents
from agent.task_queue import TaskQueue

logger = logging.getLogger(__name__)


class Installer:
    def __init__(
        self, queue: TaskQueue, *, store: ModelStore, applier: Applier, events: InstallerEvents
    ) -> None:
        self.queue = queue
        self.store = store
        self.applier = applier
        self.events = events
        self.triallog = queue.triallog

    def run_due(self) -> bool:
        """Attempt the oldest due task, if any; True if one was attempted."""
        pending = self.queue.next_due()
        if pending is None:
            return False
        try:
            record = self.store.task_record(pending.task)
        except ModelStoreError as exc:
            self.queue.fail(pending, classify(exc))
            return True
        if record is not None and record.payload_digest == pending.payload_id:
            logger.info(
                "%s v%s was stored before a restart; not retraining", pending.task, pending.version
            )
            self._done(pending, applied=None)
            return True
        verified = self.queue.verified(pending)
        if verified is None:
            return True
        pending.attempts += 1
        pending.in_progress = True
        self.queue.save()

        def progress(fraction: float, stage: str) -> None:
            self.events.on_progress(pending.task, pending.version, fraction, stage)

        progress(0.0, "starting")
        try:
            applied = self.applier.apply(verified, store=self.store, progress=progress)
        except Exception as exc:
            fault = classify(exc)
            if not fault.expected:
                logger.error(
                    "installing %s v%s failed", pending.task, pending.version, exc_info=exc
                )
            self.queue.fail(pending, fault)
            return True
        self._done(pending, applied=applied)
        return True

    def _done(self, pending: PendingTask, *, applied: Applied | None) -> None:
        ready_at = self.queue.clock()
        self.queue.drop(pending)
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
