"""The soak, as its stages: build the fleet -> start the agents -> publish under chaos -> let the
fleet settle -> stop every agent cleanly -> check what the devices' own files say."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.runlog import machine_info
from bench.soak.chaos import KILLS, KINDS, Chaos
from bench.soak.config import SoakConfig
from bench.soak.fleet import Fleet
from bench.soak.observer import Observer
from bench.soak.verdict import Verdict, summarize
from tools.devbroker import ADMIN_USER


def run_soak(config: SoakConfig, root: Path, *, log: Any = print) -> dict[str, Any]:
    started = time.time()
    info = machine_info()
    fleet = Fleet(config, root)
    broker = fleet.broker
    observer = Observer(broker.url, username=ADMIN_USER, password=broker.passwords[ADMIN_USER])
    observer.start()
    chaos = Chaos(fleet, observer, seed=config.seed)
    try:
        _start_agents(fleet, observer, log)
        _chaos_phase(config, fleet, chaos, log)
        settle_s = _settle(config, fleet, observer, chaos, log)
        clean_exits = [d.terminate() for d in fleet.devices]
        result = _figures(config, fleet, observer, chaos)
    finally:
        observer.stop()
        fleet.close()
    result |= {
        "settle_s": settle_s,
        "clean_exit_codes": sorted({c for c in clean_exits if c is not None}),
        "wall_s": round(time.time() - started, 1),
        "machine": info | {"loadavg_end": round(os.getloadavg()[0], 1)},
    }
    return result


def _start_agents(fleet: Fleet, observer: Observer, log: Any) -> None:
    for device in fleet.devices:
        device.start()
    ids = [d.device_id for d in fleet.devices]
    if not observer.wait_for(lambda: all(observer.last_status(i) for i in ids), timeout_s=240):
        missing = [i for i in ids if not observer.last_status(i)]
        raise RuntimeError(f"agents never reported a status: {missing}")
    log(f"soak: {len(ids)} agents up")


def _chaos_phase(config: SoakConfig, fleet: Fleet, chaos: Chaos, log: Any) -> None:
    """Publish versions and inject faults until the duration is over."""
    rng = random.Random(config.seed + 1)
    start = time.time()
    groups = fleet.groups()
    next_publish = {g: start + 2.0 * i for i, g in enumerate(groups)}
    next_chaos = start + max(10.0, config.chaos_every_s)
    while time.time() < start + config.duration_s:
        now = time.time()
        for group, at in next_publish.items():
            if now >= at:
                chaos.publish(group)
                next_publish[group] = now + rng.uniform(0.5, 1.5) * config.publish_every_s
        chaos.due(now)
        if now >= next_chaos and all(chaos.versions.values()):
            injection = chaos.inject()
            where = injection.device_id or injection.group
            log(f"soak: +{now - start:5.0f} s {injection.kind} {where}")
            next_chaos = time.time() + rng.uniform(0.5, 1.5) * config.chaos_every_s
        for device in fleet.devices:
            if device.proc is not None and device.proc.poll() is not None:
                device.check_exit()  # died by itself: note it, and restart it as systemd would
                device.start()
        time.sleep(0.2)
    chaos.finish()


def _settle(
    config: SoakConfig, fleet: Fleet, observer: Observer, chaos: Chaos, log: Any
) -> float | None:
    """Seconds until every device reports the latest version of its task (None: never)."""
    start = time.time()
    owed = _owed_reports(chaos)

    def converged() -> bool:
        if not all(observer.published_since(d, at) for d, at in owed.items()):
            return False
        for device in fleet.devices:
            status = observer.last_status(device.device_id) or {}
            latest = chaos.versions[device.group]
            if (status.get("task"), status.get("version")) != (device.task, latest):
                return False
        return True

    ok = observer.wait_for(converged, timeout_s=config.settle_s)
    took = round(time.time() - start, 1)
    log(f"soak: fleet {'converged' if ok else 'did NOT converge'} in {took} s")
    return took if ok else None


def _owed_reports(chaos: Chaos) -> dict[str, float]:
    """Device -> time after which it must have published a fresh status before the fleet counts as
    settled: the retained statuses from before a late broker restart or kill already show the latest
    version, but the devices have not yet shown that they came back."""
    owed: dict[str, float] = {}
    for injection in chaos.injections:
        if injection.cleared_at is None or injection.detail.get("skipped"):
            continue
        if injection.kind == "broker_restart":
            devices = list(injection.detail.get("alive", []))
        elif injection.device_id is not None and injection.kind in KILLS:
            devices = [injection.device_id]
        else:
            continue
        for device_id in devices:
            owed[device_id] = max(owed.get(device_id, 0.0), injection.cleared_at)
    return owed


def _latest(published: list[tuple[float, str, int]], group: str, at: float) -> int:
    return max((v for t, g, v in published if g == group and t <= at + 1.0), default=0)


def _figures(
    config: SoakConfig,
    fleet: Fleet,
    observer: Observer,
    chaos: Chaos,
) -> dict[str, Any]:
    verdict = Verdict(fleet, observer, chaos.versions)
    injected: Counter[str] = Counter()
    exercised: Counter[str] = Counter()
    reported: Counter[str] = Counter()
    confirmed: Counter[str] = Counter()
    recovery: dict[str, list[float]] = {}
    unreported = []
    for injection in chaos.injections:
        if injection.detail.get("skipped"):
            continue
        injected[injection.kind] += 1
        evidence = verdict.evidence(injection)
        exercised[injection.kind] += evidence.exercised
        reported[injection.kind] += evidence.reported
        if evidence.confirmed:
            confirmed[f"{injection.kind}:{evidence.confirmed}"] += 1
        if evidence.exercised and not evidence.reported:
            unreported.append(
                {
                    "kind": injection.kind,
                    "at": injection.at,
                    "missing": evidence.missing,
                    **injection.detail,
                }
            )
        latest = _latest(chaos.history, injection.group, injection.cleared_at or injection.at)
        wait = verdict.recovery_s(injection, latest)
        if wait is not None:
            recovery.setdefault(injection.kind, []).append(wait)
    lost = verdict.lost()
    return {
        "agents": config.agents,
        "groups": config.groups,
        "tasks": [config.task(g) for g in range(config.groups)],
        "duration_s": config.duration_s,
        "seed": config.seed,
        "versions_published": {fleet.task_of(g): v for g, v in chaos.versions.items()},
        "faults_injected": {k: injected[k] for k in KINDS},
        "faults_exercised": {k: exercised[k] for k in KINDS},
        "faults_reported": {k: reported[k] for k in KINDS},
        "kills_confirmed_by_device": dict(sorted(confirmed.items())),
        "unreported": unreported,
        "lost": len(lost),
        "lost_devices": lost,
        "duplicated": verdict.duplicated(),
        "inconsistent_stores": verdict.inconsistent_stores(),
        "agent_exits": {d.device_id: d.exits for d in fleet.devices if d.exits},
        "recovery_s": {k: summarize(v) for k, v in sorted(recovery.items())},
    }
