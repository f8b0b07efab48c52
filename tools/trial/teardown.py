"""Removing a trial: the processes inside its namespaces, then the namespaces themselves.

Deleting a namespace destroys its veth ends (and so their peers), its tc qdiscs and its nft tables:
a trial creates nothing outside its own namespaces, so nothing else needs undoing. A process still
inside a namespace would keep it alive after ``ip netns delete``, so those are stopped first
(SIGTERM, then SIGKILL after a grace period). Only processes inside this trial's namespaces are
signalled, by pid.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterable

from tools.trial import registry
from tools.trial.errors import KernelError
from tools.trial.kernel import run

logger = logging.getLogger(__name__)


def pids_in(namespace: str) -> list[int]:
    try:
        out = run(["ip", "netns", "pids", namespace])
    except KernelError:
        return []  # already gone
    return [int(p) for p in out.split() if p.isdigit()]


def _signal_all(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue


def stop_processes(namespaces: list[str], *, grace_s: float = 3.0) -> None:
    """SIGTERM every process inside the namespaces; SIGKILL what is left after ``grace_s``."""
    own = os.getpid()
    pending = {p for ns in namespaces for p in pids_in(ns) if p != own}
    _signal_all(pending, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pending and time.monotonic() < deadline:
        time.sleep(0.05)
        pending = {p for p in pending if registry.process_start(p) is not None}
    if pending:
        logger.warning("SIGKILL to %d process(es) left in the trial namespaces", len(pending))
        _signal_all(pending, signal.SIGKILL)


def delete_namespaces(namespaces: list[str]) -> None:
    existing = set(registry.trial_namespaces())
    for namespace in namespaces:
        if namespace in existing:
            run(["ip", "netns", "delete", namespace])


def teardown(namespaces: list[str], *, grace_s: float = 3.0) -> None:
    stop_processes(namespaces, grace_s=grace_s)
    delete_namespaces(namespaces)


def teardown_record(record: registry.TrialRecord, *, grace_s: float = 3.0) -> None:
    """Remove everything of one trial, its record last (so a crash here is found again)."""
    found = [n for n in registry.trial_namespaces() if registry.trial_id_of(n) == record.trial_id]
    teardown(sorted(set(record.namespaces()) | set(found)), grace_s=grace_s)
    registry.record_path(record.trial_id).unlink(missing_ok=True)


def reap_dead_trials() -> list[str]:
    """Tear down every trial whose owner is dead; returns their ids.

    A namespace without a record (its owner crashed before writing one) is reaped when the pid in
    its name is not running any more.
    """
    reaped: list[str] = []
    recorded = {r.trial_id: r for r in registry.records()}
    for trial_id, record in recorded.items():
        if not registry.owner_alive(record):
            teardown_record(record)
            reaped.append(trial_id)
    orphans: dict[str, list[str]] = {}
    for namespace in registry.trial_namespaces():
        owner = registry.trial_id_of(namespace)
        if owner is not None and owner not in recorded:
            orphans.setdefault(owner, []).append(namespace)
    for trial_id, namespaces in orphans.items():
        pid = int(trial_id.split("-")[0])
        if registry.process_start(pid) is None:
            teardown(namespaces)
            reaped.append(trial_id)
    return reaped
