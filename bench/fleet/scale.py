"""One fleet size, measured: a tuned mosquitto, N agents in a few worker processes, one publish
per payload, every device's own record of it, and the broker's and workers' CPU and memory.

The fleet connects once; the payloads (smallest budget first) are published one after the other
as successive versions of one task, so each publish reaches a fleet that has settled."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench._common import log
from bench.fleet import procstat
from bench.fleet.figures import Delivery, Usage, fleet_row
from bench.fleet.payloads import TASK, BudgetPayload
from bench.fleet.pool import Pool
from bench.fleet.protocol import (
    AwaitCommand,
    Connected,
    DeviceLogin,
    Ready,
    Report,
    ReportCommand,
    StopCommand,
    WorkerSpec,
)
from bench.fleet.watch import ResultWatch
from builder.fleet.publish import publish_payload
from plada.payload import payload_digest
from tools.devbroker import ADMIN_USER, Broker, BrokerTuning, start_broker
from tools.fleet_harness import admin_options

GROUP = "fleet"
_SETTLE_S = 2.0  # after connecting or a rollout: the retained status traffic dies down


@dataclass(frozen=True)
class ScaleSettings:
    # About 32 agents (64 threads) per interpreter: 1,000 agents in 8 processes spent most of
    # their CPU handing the interpreter lock around, in 16 they were ready in 15.8 / 27.4 s, in
    # 32 in 14.2 / 21.8 s (2 / 8 KiB, at a higher load); each process costs ~100 MB.
    workers: int = 32  # at most
    agents_per_worker: int = 32
    switch_interval_s: float = 0.05
    worker_nice: int = 5  # workers yield to the broker and the coordinator (worker.py)
    publish_timeout_s: float = 60.0  # the builder's wait for PUBACKs while the fleet is busy
    chunk_bytes: int = 1024  # the thin-link setting (bench.soak, tools.trial): several chunks
    ready_timeout_s: float = 120.0  # a device not ready by then counts as lost
    connect_timeout_s: float = 300.0
    state_root: Path | None = None  # None: /dev/shm when there is one (see `state_parent`)
    tuning: BrokerTuning = field(
        default_factory=lambda: BrokerTuning(
            max_connections=20_000, nofile=65_536, autosave_interval_s=60, set_tcp_nodelay=True
        )
    )

    def state_parent(self) -> Path | None:
        """Where the agents' state folders go: each device has its own flash, so N devices
        sharing this machine's one disk would measure its fsync queue; tmpfs keeps every write
        and fsync of the real code, without that queue."""
        if self.state_root is not None:
            return self.state_root
        shm = Path("/dev/shm")  # noqa: S108 (a folder of its own is made inside, mkdtemp)
        return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


@dataclass(frozen=True)
class Corpus:
    fingerprint: str
    size: int


def _specs(
    broker: Broker,
    ids: list[str],
    *,
    settings: ScaleSettings,
    state: Path,
    key: Path,
    corpus: Corpus,
) -> list[WorkerSpec]:
    count = max(1, min(settings.workers, -(-len(ids) // settings.agents_per_worker)))
    return [
        WorkerSpec(
            worker=w,
            broker_url=broker.url,
            group=GROUP,
            public_key=key,
            fingerprint=corpus.fingerprint,
            corpus_size=corpus.size,
            state_root=state,
            devices=[
                DeviceLogin(device_id=d, password_file=broker.password_file(d))
                for d in ids[w::count]
            ],
            connect_timeout_s=settings.connect_timeout_s,
            switch_interval_s=settings.switch_interval_s,
            nice=settings.worker_nice,
        )
        for w in range(count)
    ]


def _usage(broker: Broker, pool: Pool) -> tuple[Usage, Usage]:
    assert broker.pid is not None
    return Usage.of(procstat.sample(broker.pid)), Usage.of(procstat.total(pool.pids))


def _deliver(
    payload: BudgetPayload,
    *,
    broker: Broker,
    pool: Pool,
    watch: ResultWatch,
    agents: int,
    settings: ScaleSettings,
) -> Delivery:
    time.sleep(_SETTLE_S)
    broker_before, clients_before = _usage(broker, pool)
    loadavg = os.getloadavg()[0]
    started = time.time()
    report = publish_payload(
        payload.data,
        options=replace(admin_options(broker), timeout_s=settings.publish_timeout_s),
        group=GROUP,
        max_chunk_bytes=settings.chunk_bytes,
    )
    acked = time.time()
    readies = pool.ask(
        AwaitCommand(version=payload.version, timeout_s=settings.ready_timeout_s),
        Ready,
        timeout_s=settings.ready_timeout_s + 60,
    )
    done = time.time()
    broker_after, clients_after = _usage(broker, pool)
    ready = sum(r.ready for r in readies)
    watch.wait(payload.version, ready, timeout_s=30)
    return Delivery(
        payload=payload,
        payload_id=payload_digest(payload.data),
        messages=report.messages,
        started=started,
        acked=acked,
        done=done,
        not_ready=[d for r in readies for d in r.not_ready],
        results_seen=watch.arrivals(payload.version),
        broker=broker_after.since(broker_before),
        clients=clients_after.since(clients_before),
        loadavg_1m=round(loadavg, 2),
        agents=agents,
    )


def run_size(
    agents: int,
    payloads: list[BudgetPayload],
    *,
    work: Path,
    public_key: Path,
    corpus: Corpus,
    settings: ScaleSettings,
) -> list[dict[str, Any]]:
    """Rows of fleet.json for `agents` devices, one per payload."""
    work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"fleet-{agents}-", dir=work))
    broker = start_broker(folder / "broker", tls=False, tuning=settings.tuning)
    state = Path(tempfile.mkdtemp(prefix=f"plada-fleet-{agents}-", dir=settings.state_parent()))
    pool: Pool | None = None
    watch: ResultWatch | None = None
    try:
        ids = [f"fleet-{i:04d}" for i in range(agents)]
        broker.add_users(ids)
        assert broker.pid is not None
        broker_idle = procstat.sample(broker.pid)
        started = time.monotonic()
        specs = _specs(broker, ids, settings=settings, state=state, key=public_key, corpus=corpus)
        pool = Pool(specs, folder)
        connected = pool.collect(Connected, timeout_s=settings.connect_timeout_s + 30)
        connect_s = time.monotonic() - started
        log(f"fleet {agents}: {sum(c.agents for c in connected)} agents connected in "
            f"{connect_s:.1f} s ({len(pool.workers)} processes)")  # fmt: skip
        watch = ResultWatch(
            broker.url, username=ADMIN_USER, password=broker.passwords[ADMIN_USER], task=TASK
        )
        watch.start()
        time.sleep(_SETTLE_S)
        broker_connected, clients_connected = _usage(broker, pool)
        connect = {
            "seconds": round(connect_s, 3),
            "broker_cpu_s": round(broker_connected.cpu_s - broker_idle.cpu_s, 3),
            "broker_rss_mb": round(broker_connected.rss_mb, 1),
            "clients_rss_mb": round(clients_connected.rss_mb, 1),
            "broker_nofile": broker.nofile(),
            "worker_warm_up_s": round(max(c.warm_up_s for c in connected), 3),
            "broker_idle_rss_mb": round(broker_idle.rss_mb, 1),
            "clients_base_rss_mb": round(sum(c.base_rss_mb for c in connected), 1),
        }
        deliveries = []
        for payload in payloads:
            delivery = _deliver(
                payload, broker=broker, pool=pool, watch=watch, agents=agents, settings=settings
            )
            waited = delivery.done - delivery.started
            log(f"fleet {agents}, {len(payload.data)} B: waited {waited:.2f} s, "
                f"{len(delivery.not_ready)} not ready")  # fmt: skip
            deliveries.append(delivery)
        reports = pool.ask(
            ReportCommand(payload_ids=[d.payload_id for d in deliveries]), Report, timeout_s=300
        )
        devices = [device for r in reports for device in r.devices]
        failures = [f for s in pool.stop(StopCommand()) for f in s.failures]
        pool = None
        if failures:
            raise RuntimeError(f"fleet {agents}: agents did not stop cleanly: {failures[:5]}")
        return [
            fleet_row(
                d,
                devices,
                workers=len(specs),
                chunk_bytes=settings.chunk_bytes,
                connect=connect,
                broker_kind=broker.kind,
            )
            for d in deliveries
        ]
    finally:
        if watch is not None:
            watch.stop()
        if pool is not None:
            pool.kill()
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)
