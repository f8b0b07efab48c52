"""`plada-agent run` with a pause inside training, for the SIGKILL-mid-training test.

    python -m tests.support.slow_agent --config agent.toml --marker FILE [--slow-task NAME]

Identical to the real daemon (real link, real pipeline) except that when training starts (of
task NAME only, if given) it writes FILE and sleeps, so the test can kill it at a known point.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from pathlib import Path

from agent.app import AgentApp, Applied, PipelineApplier, ProgressFn, subscription_record
from agent.config import load_config
from agent.link import MqttLink
from agent.models import ModelStore
from agent.pipeline import VerifiedPayload


class SlowApplier(PipelineApplier):
    def __init__(self, config: object, marker: Path, slow_task: str | None = None) -> None:
        super().__init__(config)  # type: ignore[arg-type]
        self.marker = marker
        self.slow_task = slow_task

    def apply(
        self, verified: VerifiedPayload, *, store: ModelStore, progress: ProgressFn
    ) -> Applied:
        slow = self.slow_task in (None, verified.task)

        def slow_progress(fraction: float, stage: str) -> None:
            progress(fraction, stage)
            if stage == "train" and slow:
                self.marker.write_text("training\n", encoding="utf-8")
                time.sleep(120)

        return super().apply(verified, store=store, progress=slow_progress)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--marker", type=Path, required=True)
    parser.add_argument("--slow-task", help="pause only while training this task")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    config = load_config(args.config)
    link = MqttLink(config.mqtt, device_id=config.device_id, record=subscription_record(config))
    app = AgentApp(
        config,
        link=link,
        applier=SlowApplier(config, args.marker, args.slow_task),
        stop=threading.Event(),
    )
    return app.run()


if __name__ == "__main__":
    sys.exit(main())
