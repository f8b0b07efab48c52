"""One retained result message per installed task (``<base>/device/<id>/result/<task>``).

Each result is also kept under ``<state>/fleet/results/<task>.json`` and published again after
every (re)connect: that covers a crash between installing a task and publishing its result, and a
broker that lost its retained store.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.status import TaskResult
from plada.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.fleet_state import PendingTask
    from agent.ports import Applied, DaemonApplier, Link
    from agent.triallog import TrialLog

logger = logging.getLogger(__name__)


class ResultPublisher:
    def __init__(
        self,
        config: AgentConfig,
        *,
        folder: Path,
        link: Link,
        applier: DaemonApplier,
        triallog: TrialLog,
    ) -> None:
        self.config = config
        self.folder = folder
        self.link = link
        self.applier = applier
        self.triallog = triallog
        self.topics = config.mqtt.topics

    def publish(self, pending: PendingTask, *, applied: Applied | None, ready_at: float) -> None:
        summary = self.triallog.task_summary(pending.payload_id)
        try:
            probe = self.applier.evaluate_probe(pending.task)
        except Exception as exc:
            logger.warning("probe evaluation failed: %s", exc)
            probe = None
        result = TaskResult(
            device_id=self.config.device_id,
            device_class=self.config.device_class,
            task=pending.task,
            version=pending.version,
            payload_id=pending.payload_id,
            num_indices=applied.num_indices if applied else -1,
            bytes_received=summary.payload_bytes if summary else 0,
            messages=summary.messages if summary else 0,
            time_to_model_s=round(ready_at - pending.first_byte_at, 3),
            train_seconds=round(applied.train_seconds, 3) if applied else 0.0,
            train_accuracy=applied.train_accuracy if applied else None,
            probe_accuracy=probe.accuracy if probe else None,
            probe_size=probe.images if probe else None,
            finished_at=ready_at,
            extra={"resumed_after_restart": applied is None},
            probe_skipped=probe.skipped if probe else 0,
        )
        body = result.to_json()
        self.folder.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.folder / f"{pending.task}.json", body)
        # QoS 0, like status: every connection publishes the kept results again, so a result the
        # link lost with its connection still arrives; QoS 1 would add a PUBACK frame down.
        self.link.publish(self.topics.result(self.config.device_id, pending.task), body, qos=0)

    def clear(self, task: str) -> None:
        """A retired task: its kept result goes, and its retained result topic is cleared."""
        (self.folder / f"{task}.json").unlink(missing_ok=True)
        # QoS 1: a lost clear is not repeated on the next connection (no kept result is left).
        self.link.publish(self.topics.result(self.config.device_id, task), b"")

    def republish(self) -> None:
        for path in sorted(self.folder.glob("*.json")):
            self.link.publish(
                self.topics.result(self.config.device_id, path.stem), path.read_bytes(), qos=0
            )
