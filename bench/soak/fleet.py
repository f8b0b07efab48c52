"""The soak's world: a broker, tiny devices (a corpus each, one encoder) and their processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.cache_rows import SEGMENT_GLOB
from agent.config import parse_config
from agent.profiles import dump_toml
from bench._common import ROOT
from bench.soak.config import SoakConfig
from plada.payload import CorpusRef, Provenance, TaskPayload, encode_payload
from plada.signing import SigningKey, generate_keypair, load_private_key
from plada.topics import TopicScheme
from tools.devbroker import Broker, start_broker
from tools.tiny.corpus import TINY_CLASSES, make_tiny_corpus, tiny_labels
from tools.tiny.encoder import make_tiny_onnx_encoder

_CORPUS_SEED = 5
# Training long enough (about 0.5 s of NumPy steps) that a kill can land inside it.
_MIN_STEPS = 6000
_NOTE_BYTES = 3000  # pads payloads to 3+ KB, so they travel as 1 KB chunks


@dataclass
class Device:
    device_id: str
    group: str
    task: str
    root: Path
    config_path: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: list[float] = field(default_factory=list)
    killed_at: list[float] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)  # codes of exits nobody asked for

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def forget_feature_rows(self) -> None:
        """Delete the features the agent kept from earlier installs (agent/cache_rows.py), as a
        device whose cache never held them: its next install reads every kept image again. The
        running agent treats a segment that vanishes as missing rows."""
        for rows in (self.root / "cache").rglob(SEGMENT_GLOB):
            rows.unlink(missing_ok=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=env,
            )
        self.started_at.append(time.time())

    def check_exit(self) -> None:
        """Record an exit the soak did not cause (an agent must never die by itself)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exits.append(int(self.proc.returncode))
            self.proc = None

    def kill(self) -> None:
        if self.proc is None:
            return
        self.check_exit()
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None
        self.killed_at.append(time.time())

    def terminate(self) -> int | None:
        """SIGTERM and wait: the clean stop every unit does."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code


class Fleet:
    """Builds everything under `root`; `payload(group, version)` makes signed task payloads."""

    def __init__(self, config: SoakConfig, root: Path) -> None:
        self.config = config
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        master = make_tiny_corpus(root / "corpus", num_images=config.images, seed=_CORPUS_SEED)
        self.fingerprint, self.size = master.fingerprint, len(master)
        self.labels = tiny_labels(config.images, seed=_CORPUS_SEED)
        self.encoder = make_tiny_onnx_encoder(root / "encoders", size=32, feature_dim=24, seed=1)
        private, self.public_key = generate_keypair(root / "keys")
        self.key: SigningKey = load_private_key(private)
        self.broker: Broker = start_broker(root / "broker")
        self.devices = [self._device(i) for i in range(config.agents)]
        self.broker.add_users([d.device_id for d in self.devices])
        for device in self.devices:
            self._write_config(device)

    def groups(self) -> list[str]:
        return [f"g{g}" for g in range(self.config.groups)]

    def task_of(self, group: str) -> str:
        return self.config.task(int(group[1:]))

    def broker_topics(self) -> TopicScheme:
        return TopicScheme()

    def in_group(self, group: str) -> list[Device]:
        return [d for d in self.devices if d.group == group]

    def _device(self, i: int) -> Device:
        device_id = f"soak-{i:02d}"
        group = f"g{i % self.config.groups}"
        root = self.root / "devices" / device_id
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.root / "corpus", root / "corpus", dirs_exist_ok=True)
        return Device(
            device_id=device_id,
            group=group,
            task=self.task_of(group),
            root=root,
            config_path=root / "agent.toml",
            log_path=root / "agent.log",
        )

    def _write_config(self, device: Device) -> None:
        table: dict[str, Any] = {
            "device_id": device.device_id,
            "device_class": "soak",
            "corpus": {"path": str(device.corpus), "verify_reads": True},
            "encoder": {"file": str(self.encoder), "threads": 1, "batch_size": 16},
            "state": {"dir": str(device.state_dir)},
            "cache": {"dir": str(device.root / "cache"), "block_size": 16},
            "trust": {"public_keys": [str(self.public_key)]},
            "head": {"backend": "numpy", "epochs": 1, "min_steps": _MIN_STEPS, "max_steps": 0},
            "recovery": {"retry_min_s": 2.0, "retry_max_s": 15.0, "watch_interval_s": 1.0},
            "mqtt": {
                "broker": self.broker.url,
                "group": device.group,
                "username": device.device_id,
                "password_file": str(self.broker.password_file(device.device_id)),
                "reconnect_min_s": 1,
                "reconnect_max_s": 4,
                "status_interval_s": 5,
                "idle_warm_after_s": 0,  # every install reads the corpus: corruption bites
            },
        }
        parse_config(table)  # fail here, not in 24 agent logs
        device.config_path.write_text(dump_toml(table), encoding="utf-8")

    def payload(self, group: str, version: int, *, key: SigningKey | None = None) -> bytes:
        task = self.task_of(group)
        indices = np.arange(self.size, dtype=np.int64)
        filler = (f"soak {task} v{version} " * 200)[:_NOTE_BYTES]
        payload = TaskPayload(
            task=task,
            version=version,
            class_names=TINY_CLASSES,
            corpus=CorpusRef(fingerprint=self.fingerprint, size=self.size),
            indices=indices,
            labels=self.labels[indices],
            provenance=Provenance(
                builder_version="soak",
                strategy="all",
                params={},
                accuracy_estimate=None,
                created_at=int(time.time()),
                note=filler,
            ),
        )
        return encode_payload(payload, signing_key=key or self.key)

    def close(self) -> None:
        for device in self.devices:
            if device.alive:
                device.terminate()
        self.broker.stop()
