"""One trial device: the real ``plada-agent run`` daemon in its namespace, and what to read off it.

Its config is the kit's agent table (class encoder, own state folder) plus the trial's links: the
broker as the device reaches it over its emulated link, a status interval longer than any trial
(so only task traffic and the agent's own state changes cross the link), no idle cache warming
competing for the CPU, the task's test images as the probe set, its Home Assistant update entity
(discovery config and state, retained; the rollout stages show what HA displays), its group
(canary or rest, tools.trial.fleet_plan), and the Prometheus endpoint on the namespace's own
loopback. What is read: the result the agent keeps for each task
(``<state>/fleet/results/<task>.json``: time to model, probe accuracy), its SQLite trial log
(payload bytes and MQTT framing per payload), and its installed head (the ONNX file a
weights delivery would carry instead).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, parse_config
from agent.models import ModelStore
from agent.profiles import dump_toml
from agent.triallog import DB_NAME, TaskSummary, TrialLog
from tools.trial.fleet_plan import CANARY_GROUP, REST_GROUP, PlannedDevice
from tools.trial.network import TrialNetwork
from tools.trial.resume_device import DaemonProcess

METRICS_PORT = 9464
METRICS_URL = f"http://127.0.0.1:{METRICS_PORT}/metrics"
GROUP = REST_GROUP
GROUPS = (CANARY_GROUP, REST_GROUP)  # every task stage publishes to both


def trial_mqtt(
    broker_url: str, probe_dir: Path, *, keepalive_s: int, group: str = GROUP
) -> dict[str, Any]:
    return {
        "broker": broker_url,
        "group": group,
        "protocol": "5",
        "keepalive_s": keepalive_s,
        "reconnect_min_s": 1,
        "reconnect_max_s": 5,
        "status_interval_s": 3600,  # no periodic status on a thin link during the trial
        "idle_warm_after_s": 0,  # no idle feature warming competing for the CPU
        "probe_dir": str(probe_dir.resolve()),
        # the update entity whose retained state the rollout stages read as Home Assistant would
        "home_assistant": True,
    }


class FleetDevice:
    def __init__(
        self,
        net: TrialNetwork,
        plan: PlannedDevice,
        folder: Path,
        table: dict[str, Any],
        *,
        encoder: str,
    ) -> None:
        self.plan = plan
        self.name = plan.name
        self.encoder = encoder
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        table = {**table, "metrics": {"listen": f"127.0.0.1:{METRICS_PORT}"}}
        self.config: AgentConfig = parse_config(table)  # validated as the daemon will
        self.config_path = folder / "agent.toml"
        self.config_path.write_text(
            dump_toml(self.config.model_dump(mode="json", exclude_none=True)), "utf-8"
        )
        argv = ["agent", "run", "--config", str(self.config_path)]
        self.daemon = DaemonProcess(net, plan.name, argv, folder / "agent.log")

    @property
    def state_dir(self) -> Path:
        return self.config.state.dir

    def start(self) -> None:
        self.daemon.start()

    def stop(self) -> int:
        return self.daemon.stop()

    def result(self, task: str) -> dict[str, Any] | None:
        """The result the agent keeps for ``task`` (None before its first install)."""
        path = self.state_dir / "fleet" / "results" / f"{task}.json"
        try:
            found: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # not there yet, or being replaced
        return found

    def task_summary(self, payload_id: str) -> TaskSummary | None:
        if not (self.state_dir / DB_NAME).exists():
            return None
        return TrialLog(self.state_dir).task_summary(payload_id)

    def last_byte_at(self, payload_id: str) -> float | None:
        """When the agent received the payload's last message (its trial log), None if never."""
        path = self.state_dir / DB_NAME
        if not path.exists():
            return None
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            (last,) = db.execute(
                "SELECT MAX(received_at) FROM messages WHERE payload_id = ?", (payload_id,)
            ).fetchone()
        return None if last is None else float(last)

    def head_file(self, task: str) -> Path | None:
        """The installed head of ``task`` as the device stores it (ONNX)."""
        installed = ModelStore(self.state_dir).installed(task)
        return installed[-1].onnx_path if installed else None
