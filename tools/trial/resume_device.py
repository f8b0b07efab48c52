"""A real ``plada-agent run`` daemon inside a trial device namespace, and what can be read off it.

The device is the tests' tiny device (tools/tiny/device.py: a generated corpus of shapes,
a tiny ONNX encoder, a signing key), so a task trains in seconds; the daemon, its MQTT link, its
chunk store and its trial log are the product's own. What the measurements read:

- chunk files under ``<state>/fleet/chunks/<payload id>/`` (what the device holds, durably);
- ``<state>/models/state.json`` (the installed payload: the task reached the device);
- the trial log ``<state>/triallog.sqlite`` (every message the daemon received, in order).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import cbor2
import numpy as np

from agent.config import parse_config
from agent.errors import ModelStoreError
from agent.models import ModelStore
from agent.profiles import dump_toml
from agent.subscriptions import SubscriptionRecord
from tools.tiny.device import TinyDevice, make_device
from tools.trial.clients import REPO
from tools.trial.network import TrialNetwork


def make_tiny_device(root: Path, *, num_images: int) -> TinyDevice:
    return make_device(root, num_images=num_images, epochs=3)


TASK = (
    "shapes"  # the task every trial payload teaches (its topics are plada/group/<g>/tasks/shapes)
)


def task_payload(tiny: TinyDevice, *, version: int, fraction: float = 0.5, seed: int = 0) -> bytes:
    """A signed task over a random ``fraction`` of the corpus (sized by the corpus)."""
    size = len(tiny.corpus)
    rng = np.random.default_rng(seed + version)
    indices = np.sort(rng.choice(size, int(size * fraction), replace=False))
    return tiny.payload(version=version, indices=indices, task=TASK)


@dataclass(frozen=True)
class AgentSetup:
    device_id: str
    group: str
    state_dir: Path
    config_path: Path
    log_path: Path

    @property
    def client_id(self) -> str:
        return f"plada-{self.device_id}"


def write_agent_config(
    tiny: TinyDevice,
    folder: Path,
    *,
    device_id: str,
    group: str,
    broker_url: str,
    protocol: str,
    keepalive_s: int,
) -> AgentSetup:
    """An agent.toml for the tiny device with its own state, group and broker."""
    data = tiny.config.model_dump(mode="json", exclude_none=True)
    data["device_id"] = device_id
    data["state"] = {"dir": str(folder / "state")}
    data["mqtt"] = {
        "broker": broker_url,
        "group": group,
        "protocol": protocol,
        "keepalive_s": keepalive_s,
        "reconnect_min_s": 1,
        "reconnect_max_s": 2,
        "status_interval_s": 600,  # no periodic status: only task traffic on the link
        "idle_warm_after_s": 0,  # no idle feature warming competing for the CPU
    }
    config = parse_config(data)  # validated as the daemon will
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "agent.toml"
    path.write_text(dump_toml(config.model_dump(mode="json", exclude_none=True)), "utf-8")
    return AgentSetup(device_id, group, folder / "state", path, folder / "agent.log")


class DaemonProcess:
    """A long-running Python module inside a device namespace, its output in a log file."""

    def __init__(self, net: TrialNetwork, where: str, argv: list[str], log_path: Path) -> None:
        self.net = net
        self.where = where
        self.argv = argv
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with self.log_path.open("ab") as log:
            self._proc = self.net.popen(
                self.where,
                [sys.executable, "-m", *self.argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )

    def stop(self, *, timeout_s: float = 30.0) -> int:
        """SIGTERM (a clean disconnect, like ``systemctl stop``); the exit code."""
        if self._proc is None:
            return 0
        self._proc.send_signal(signal.SIGTERM)
        try:
            code = self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait()
        self._proc = None
        return code

    def exited(self) -> bool:
        """Started, and has exited since (a crash, or a config the daemon refused)."""
        return self._proc is not None and self._proc.poll() is not None

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


class AgentDevice(DaemonProcess):
    """The real daemon: ``python -m agent run`` (DEBUG log: paho's packet lines too)."""

    def __init__(self, net: TrialNetwork, where: str, setup: AgentSetup) -> None:
        argv = ["agent", "run", "--config", str(setup.config_path), "--log-level", "DEBUG"]
        super().__init__(net, where, argv, setup.log_path)
        self.setup = setup
        self.client_id = setup.client_id

    def held_indices(self, payload_id: str) -> list[int]:
        return _chunk_indices(self.setup.state_dir / "fleet" / "chunks" / payload_id)

    def subscribed(self) -> bool:
        """Whether the broker acknowledged the device's task subscriptions (its record says so)."""
        path = self.setup.state_dir / "fleet" / "subscriptions.json"
        try:  # written atomically by the daemon
            record = SubscriptionRecord.model_validate_json(path.read_bytes())
        except (OSError, ValueError):
            return False
        return bool(record.standing)

    def holds_manifest(self, payload_id: str) -> bool:
        return (self.setup.state_dir / "fleet" / "chunks" / payload_id / "manifest.bin").exists()

    def installed(self) -> str | None:
        """The payload id installed for the trial's task, from the model store's record (the
        device's one record of what is installed)."""
        try:
            record = ModelStore(self.setup.state_dir).state().tasks.get(TASK)
        except ModelStoreError:  # not written yet, or caught mid-write by an older reader
            return None
        return record.payload_digest if record is not None and record.installed else None

    def received(self) -> list[tuple[float, str, int]]:
        """(time, topic, payload bytes) of every message the daemon logged, oldest first."""
        path = self.setup.state_dir / "triallog.sqlite"
        if not path.exists():
            return []
        with closing(sqlite3.connect(path)) as db:
            rows = db.execute(
                "SELECT received_at, topic, payload_bytes FROM messages ORDER BY id"
            ).fetchall()
        return [(float(t), str(topic), int(n)) for t, topic, n in rows]


def _chunk_indices(folder: Path) -> list[int]:
    """Indices of the chunk files in a folder (each chunk is self-describing CBOR)."""
    if not folder.exists():
        return []
    return sorted(int(cbor2.loads(p.read_bytes())["index"]) for p in folder.glob("c-*.bin"))
