"""Trial records: what a running trial created, and whether the process that owns it still lives.

A trial's id is ``<owner pid>-<4 hex>``; every namespace it creates is named ``pltr-<id>-...``, and
its record is ``<run dir>/<id>.json`` (``/run/plada-trial`` unless ``PLADA_TRIAL_RUN_DIR`` says
otherwise; /run is emptied at boot, like the namespaces). The owner is identified by pid *and* the
kernel's start time of that pid, so a recycled pid never keeps a dead trial's leftovers alive.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from plada.atomic import write_bytes_atomic
from tools.trial.errors import TrialStateError
from tools.trial.kernel import run

NS_PREFIX = "pltr-"


def run_dir() -> Path:
    return Path(os.environ.get("PLADA_TRIAL_RUN_DIR", "/run/plada-trial"))


class DeviceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    index: int
    profile: str
    namespace: str
    broker_if: str  # the veth end in the broker namespace
    device_if: str  # the veth end in the device namespace
    broker_ip: str
    device_ip: str


class TrialRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trial_id: str
    owner_pid: int
    owner_start: int  # /proc/<pid>/stat field 22: start time in clock ticks after boot
    created_at: float
    base_network: str
    broker_namespace: str
    devices: list[DeviceRecord]
    guardian_pid: int | None = None

    def namespaces(self) -> list[str]:
        return [self.broker_namespace, *(d.namespace for d in self.devices)]

    def device(self, name: str) -> DeviceRecord:
        for device in self.devices:
            if device.name == name:
                return device
        known = ", ".join(d.name for d in self.devices)
        raise TrialStateError(f"trial {self.trial_id}: no device {name!r} (devices: {known})")


def new_trial_id() -> str:
    return f"{os.getpid()}-{secrets.token_hex(2)}"


def namespace_name(trial_id: str, role: str) -> str:
    return f"{NS_PREFIX}{trial_id}-{role}"


def trial_id_of(namespace: str) -> str | None:
    """The trial id inside a ``pltr-<pid>-<hex>-...`` name, else None."""
    if not namespace.startswith(NS_PREFIX):
        return None
    parts = namespace[len(NS_PREFIX) :].split("-")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return f"{parts[0]}-{parts[1]}"


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks after boot, or None when no such process lives."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    state, start = fields[0], fields[19]
    return None if state in ("Z", "X") else int(start)


def owner_alive(record: TrialRecord) -> bool:
    return process_start(record.owner_pid) == record.owner_start


def record_path(trial_id: str) -> Path:
    return run_dir() / f"{trial_id}.json"


def save(record: TrialRecord) -> Path:
    path = record_path(record.trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, record.model_dump_json(indent=1).encode("utf-8"))
    return path


def load(path: Path) -> TrialRecord:
    try:
        return TrialRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, ValidationError) as exc:
        raise TrialStateError(f"{path}: unreadable trial record ({exc})") from exc


def records() -> list[TrialRecord]:
    """Every readable record in the run dir (an unreadable one is skipped, not fatal)."""
    folder = run_dir()
    found = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            found.append(load(path))
        except TrialStateError:
            continue
    return found


def trial_namespaces() -> list[str]:
    """Names of every namespace a trial created (``ip netns list``), live or left over."""
    names = [line.split()[0] for line in run(["ip", "netns", "list"]).splitlines() if line.strip()]
    return [n for n in names if trial_id_of(n) is not None]
