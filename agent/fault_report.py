"""Reporting a fault: the log, the trial log (with its cause) and the daemon's status, in one
call, so no fault is shown in one place and missing from another."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from agent.faults import Fault
from agent.status import LastError
from agent.triallog import TrialLog

logger = logging.getLogger(__name__)


class FaultReporter:
    def __init__(
        self,
        triallog: TrialLog,
        *,
        sink: Callable[[LastError], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.triallog = triallog
        self.sink = sink  # shows the error (status); None until the daemon is wired up
        self.clock = clock
        self.held: list[LastError] = []  # reported before a sink was set (start-up)

    def error(
        self,
        fault: Fault,
        *,
        payload_id: str | None = None,
        task: str | None = None,
        version: int | None = None,
        message: str | None = None,
    ) -> LastError:
        return LastError(
            code=fault.code,
            message=message or fault.message,
            at=self.clock(),
            task=task,
            version=version,
            payload_id=payload_id,
            fault=fault.fault_class.value,
            hint=fault.hint,
        )

    def report(
        self,
        fault: Fault,
        *,
        payload_id: str | None = None,
        task: str | None = None,
        version: int | None = None,
        outcome: str | None = None,
        message: str | None = None,
    ) -> LastError:
        """Log it, record it (a fault event; with `outcome`, the payload's row too), show it."""
        error = self.error(
            fault, payload_id=payload_id, task=task, version=version, message=message
        )
        logger.warning(
            "%s fault%s: %s: %s",
            error.fault,
            f" on payload {payload_id[:12]}" if payload_id else "",
            error.code,
            error.message,
        )
        if outcome is not None and payload_id is not None:
            self.triallog.record_task(
                payload_id=payload_id,
                outcome=outcome,
                task=task,
                version=version,
                error=f"{error.code}: {error.message}",
            )
        self.triallog.record_event(
            kind="fault",
            payload_id=payload_id,
            task=task,
            version=version,
            fault=error.fault,
            code=error.code,
            message=error.message,
            at=error.at,
        )
        if self.sink is None:
            self.held.append(error)
        else:
            self.sink(error)
        return error

    def connect(self, sink: Callable[[LastError], None]) -> None:
        """Show errors from now on, starting with those held since start-up."""
        self.sink = sink
        held, self.held = self.held, []
        for error in held:
            sink(error)
