"""What the soak found: lost and duplicated installs, store consistency, every fault's evidence in
status and trial log, and recovery times. Reads the devices' own files after they stopped."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.models import ModelStore
from agent.triallog import Event, TrialLog
from bench.soak.chaos import KILLS

if TYPE_CHECKING:
    from bench.soak.chaos import Injection
    from bench.soak.fleet import Device, Fleet
    from bench.soak.observer import Observer

_WINDOW_S = 30.0  # a fault's evidence must follow it within this time


@dataclass(frozen=True)
class Evidence:
    exercised: bool  # the fault could be seen (e.g. an agent was up to see the junk)
    reported: bool  # it is in a status message and in a trial log, with its cause
    confirmed: str | None = None  # what the device's own log says happened (kills)
    missing: str | None = None  # when not reported: which device lacked which evidence


class Verdict:
    def __init__(self, fleet: Fleet, observer: Observer, versions: dict[str, int]) -> None:
        self.fleet = fleet
        self.observer = observer
        self.versions = versions
        self.events = {d.device_id: TrialLog(d.state_dir).events() for d in fleet.devices}

    # -- end state ------------------------------------------------------------------------------
    def lost(self) -> list[str]:
        """Devices not on the latest version of their group's task (per their model store)."""
        out = []
        for device in self.fleet.devices:
            record = ModelStore(device.state_dir).task_record(device.task)
            if record is None or record.version != self.versions[device.group]:
                out.append(device.device_id)
        return out

    def duplicated(self) -> int:
        """Installs beyond the first of the same payload on the same device."""
        extra = 0
        for events in self.events.values():
            counts = Counter(e.payload_id for e in events if e.kind == "installed")
            extra += sum(n - 1 for n in counts.values())
        return extra

    def inconsistent_stores(self) -> dict[str, list[str]]:
        found = {d.device_id: ModelStore(d.state_dir).check() for d in self.fleet.devices}
        return {k: v for k, v in found.items() if v}

    # -- evidence -------------------------------------------------------------------------------
    def _faults(self, device_id: str, since: float, *, code: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events[device_id]
            if e.kind == "fault"
            and since - 1.0 <= e.at <= since + _WINDOW_S
            and (code is None or e.code == code)
        ]

    def _status_shows(self, device_id: str, since: float, code: str | None, fault: str) -> bool:
        for _, status in self.observer.statuses(device_id, since=since - 1.0):
            for brief in status.get("recent_faults") or []:
                if brief.get("fault") == fault and (code is None or brief.get("code") == code):
                    if since - 1.0 <= float(brief.get("at") or 0) <= since + _WINDOW_S:
                        return True
        return False

    def evidence(self, injection: Injection) -> Evidence:
        kind, device_id = injection.kind, injection.device_id
        if kind in KILLS:
            if device_id is None or injection.cleared_at is None:
                return Evidence(False, False)
            seen = bool(self._faults(device_id, injection.cleared_at, code="UncleanStop"))
            shown = self._status_shows(device_id, injection.cleared_at, "UncleanStop", "device")
            return Evidence(True, seen and shown, self._confirmed(device_id, injection))
        if kind == "broker_restart":
            return self._broker_evidence(injection)
        if kind == "corrupt_image":
            if device_id is None or not _was_up(self._device(device_id), injection.at):
                return Evidence(False, False)
            code = "CorpusCorruptError"
            seen = bool(self._faults(device_id, injection.at, code=code))
            return Evidence(
                True, seen and self._status_shows(device_id, injection.at, code, "device")
            )
        return self._junk_evidence(injection)

    def _confirmed(self, device_id: str, injection: Injection) -> str | None:
        after = injection.cleared_at or injection.at
        for event in self.events[device_id]:
            if after - 1.0 <= event.at <= after + _WINDOW_S:
                if event.kind == "fault" and event.code == "AgentInterrupted":
                    return "training"
                if event.kind == "resumed":
                    return "receiving"
        return None

    def _broker_evidence(self, injection: Injection) -> Evidence:
        up = injection.cleared_at or injection.at
        devices = [
            self._device(d)
            for d in injection.detail.get("alive", [])
            if _was_up(self._device(d), injection.at)
            and _was_up(self._device(d), up)
            and self._was_connected(d, injection.at)
        ]
        if not devices:
            return Evidence(False, False)
        for device in devices:
            events = [
                e
                for e in self.events[device.device_id]
                if e.kind == "link"
                and e.code == "disconnected"
                # a busy agent (training, load 7 on 2 cores) may notice the closed socket
                # only after the broker is back: the evidence window, not 1 s, bounds it
                and injection.at - 1.0 <= e.at <= up + _WINDOW_S
            ]
            shown = any(
                ((s.get("link") or {}).get("last_disconnect") or {}).get("at", 0)
                >= injection.at - 1
                for _, s in self.observer.statuses(device.device_id, since=up)
            )
            if not (events and shown):
                lacks = [n for n, ok in (("trial log", events), ("status", shown)) if not ok]
                return Evidence(True, False, missing=f"{device.device_id}: {', '.join(lacks)}")
        return Evidence(True, True)

    def _was_connected(self, device_id: str, at: float) -> bool:
        """Whether the agent process running at `at` had a broker connection then: one that was
        still starting (restarted just before the broker went down) never saw the disconnect."""
        device = self._device(device_id)
        started = max(t for t in device.started_at if t <= at)
        links = [e for e in self.events[device_id] if e.kind == "link" and started <= e.at <= at]
        return bool(links) and links[-1].code == "connected"

    def _junk_evidence(self, injection: Injection) -> Evidence:
        group = [d for d in self.fleet.in_group(injection.group) if _was_up(d, injection.at)]
        if not group:
            return Evidence(False, False)
        for device in group:
            seen = any(e.fault == "payload" for e in self._faults(device.device_id, injection.at))
            if seen and self._status_shows(device.device_id, injection.at, None, "payload"):
                return Evidence(True, True)
        return Evidence(True, False)

    def _device(self, device_id: str) -> Device:
        return next(d for d in self.fleet.devices if d.device_id == device_id)

    # -- recovery -------------------------------------------------------------------------------
    def recovery_s(self, injection: Injection, latest: int) -> float | None:
        """From the cause going away to the device(s) showing the then-latest version."""
        if injection.cleared_at is None:
            return None
        if injection.kind == "broker_restart":
            waits = [
                self._first_report(d, injection.cleared_at, latest_of=None)
                for d in injection.detail.get("alive", [])
            ]
            known = [w for w in waits if w is not None]
            return max(known) if known else None
        if injection.device_id is None:
            return None
        return self._first_report(injection.device_id, injection.cleared_at, latest_of=latest)

    def _first_report(self, device_id: str, since: float, *, latest_of: int | None) -> float | None:
        task = self._device(device_id).task
        for at, status in self.observer.statuses(device_id, since=since):
            if latest_of is None or (
                status.get("task") == task and (status.get("version") or 0) >= latest_of
            ):
                return at - since
        return None


def _was_up(device: Device, at: float) -> bool:
    """Whether the agent process was running at time `at` (from its start and kill times)."""
    starts = [t for t in device.started_at if t <= at]
    kills = [t for t in device.killed_at if t <= at]
    return bool(starts) and (not kills or max(starts) > max(kills))


def summarize(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "median": None, "max": None}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }
