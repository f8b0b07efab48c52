"""One worker process of the fleet benchmark: many agent daemons in one interpreter.

    python -m bench.fleet.worker SPEC.json     # commands on stdin, events on stdout (protocol.py)

Every agent is the real daemon loop (agent.app.AgentApp) over the real MQTT link
(agent.link.MqttLink: its own paho client and connection, stable client id, persistent session,
QoS 1 subscriptions, manual acks): chunk reassembly (agent.receiver over plada.chunks), the
signature check and decode (agent.task_queue over plada.payload), the version policy, the model
store, status and result messages. Only training is the tests' instant stand-in
(tools.fleet_harness.FakeApplier: it checks the corpus reference and stores an untrained head),
because a thousand devices' training on two cores would measure CPU contention, not delivery;
bench.device measures training on a device.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from agent.app import AgentApp
from agent.link import MqttLink
from agent.status import AgentState
from bench.fleet import procstat
from bench.fleet.protocol import (
    AwaitCommand,
    CommandLine,
    Connected,
    DeviceLogin,
    DeviceReport,
    EventLine,
    PayloadRecord,
    Ready,
    Report,
    ReportCommand,
    Stopped,
    WorkerSpec,
)
from tools.fleet_harness import (
    FakeApplier,
    FakeLink,
    make_config,
    make_keys,
    make_payload_bytes,
    run_app_until,
)

_POLL_S = 0.02


@dataclass
class Agent:
    app: AgentApp
    link: MqttLink
    thread: threading.Thread

    @property
    def device_id(self) -> str:
        return self.app.config.device_id


def _start(spec: WorkerSpec, login: DeviceLogin) -> Agent:
    config = make_config(
        spec.state_root,
        device_id=login.device_id,
        public_key=spec.public_key,
        mqtt={
            "broker": spec.broker_url,
            "group": spec.group,
            "protocol": "5",
            "username": login.device_id,
            "password_file": str(login.password_file),
            "idle_warm_after_s": 0,  # no corpus here: nothing to warm
        },
    )
    applier = FakeApplier([spec.public_key], fingerprint=spec.fingerprint, size=spec.corpus_size)
    link = MqttLink(config.mqtt, device_id=config.device_id)
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    thread = threading.Thread(target=app.run, name=f"agent-{config.device_id}", daemon=True)
    thread.start()
    return Agent(app, link, thread)


def _warm_up(spec: WorkerSpec) -> float:
    """One install through the same daemon code on a scratch agent with no connection, before
    the fleet starts: the first install in a process imports what the model store needs (onnx,
    about 3 s), which a device pays once after boot and 16 workers on 2 cores would otherwise
    pay inside the first measured rollout. Seconds it took."""
    started = time.monotonic()
    folder = spec.state_root / f"warm-up-{spec.worker}"
    keys = make_keys(folder / "keys")
    config = make_config(
        folder,
        device_id=f"warm-up-{spec.worker}",
        public_key=keys.public_path,
        mqtt={"group": spec.group, "idle_warm_after_s": 0},
    )
    link = FakeLink()
    applier = FakeApplier([keys.public_path], fingerprint=spec.fingerprint, size=spec.corpus_size)
    app = AgentApp(config, link=link, applier=applier, stop=threading.Event())
    data = make_payload_bytes(
        keys, task="warm-up", fingerprint=spec.fingerprint, size=spec.corpus_size
    )
    link.deliver(config.mqtt.topics.task(spec.group, "warm-up"), data)
    run_app_until(app, lambda: app.status.state is AgentState.READY, timeout_s=300)
    if app.status.state is not AgentState.READY:
        raise RuntimeError(f"worker {spec.worker}: the warm-up install did not finish")
    shutil.rmtree(folder, ignore_errors=True)
    return time.monotonic() - started


def _wait(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(_POLL_S)
    return predicate()


def _is_ready(agent: Agent, version: int) -> bool:
    status = agent.app.status
    return status.state is AgentState.READY and status.version == version


def _await(agents: list[Agent], command: AwaitCommand) -> Ready:
    _wait(lambda: all(_is_ready(a, command.version) for a in agents), command.timeout_s)
    late = [a.device_id for a in agents if not _is_ready(a, command.version)]
    return Ready(version=command.version, ready=len(agents) - len(late), not_ready=late)


def _report(agents: list[Agent], command: ReportCommand) -> Report:
    devices = []
    for agent in agents:
        records = []
        for payload_id in command.payload_ids:
            summary = agent.app.triallog.task_summary(payload_id)
            if summary is None:
                records.append(PayloadRecord(payload_id=payload_id))
                continue
            records.append(
                PayloadRecord(
                    payload_id=payload_id,
                    outcome=summary.outcome,
                    messages=summary.messages,
                    payload_bytes=summary.payload_bytes,
                    overhead_bytes=summary.overhead_bytes,
                    first_byte_at=summary.first_byte_at,
                    ready_at=summary.ready_at,
                )
            )
        devices.append(DeviceReport(device_id=agent.device_id, payloads=records))
    return Report(devices=devices)


def _stop(agents: list[Agent]) -> Stopped:
    for agent in agents:  # all at once: each clean stop waits for its `offline` PUBACK
        agent.app.stop.set()
    failures = []
    for agent in agents:
        agent.thread.join(timeout=30)
        if agent.thread.is_alive():
            failures.append(f"{agent.device_id}: did not stop within 30 s")
    return Stopped(failures=failures)


def _emit(out: TextIO, event: Connected | Ready | Report | Stopped) -> None:
    out.write(EventLine(event=event).model_dump_json() + "\n")
    out.flush()


def serve(spec: WorkerSpec, commands: TextIO, out: TextIO) -> int:
    warm_up_s = _warm_up(spec)
    base_rss_mb = procstat.sample(os.getpid()).rss_mb
    started = time.monotonic()
    agents = [_start(spec, login) for login in spec.devices]
    try:
        if not _wait(
            lambda: all(a.link.connected.is_set() for a in agents), spec.connect_timeout_s
        ):
            missing = [a.device_id for a in agents if not a.link.connected.is_set()]
            print(f"worker {spec.worker}: not connected: {missing[:10]}", file=sys.stderr)
            return 1
        seconds = round(time.monotonic() - started, 3)
        connected = Connected(
            agents=len(agents),
            seconds=seconds,
            warm_up_s=round(warm_up_s, 3),
            base_rss_mb=round(base_rss_mb, 1),
        )
        _emit(out, connected)
        for line in commands:
            command = CommandLine.model_validate_json(line).command
            if isinstance(command, AwaitCommand):
                _emit(out, _await(agents, command))
            elif isinstance(command, ReportCommand):
                _emit(out, _report(agents, command))
            else:
                break
    finally:
        stopped = _stop(agents)
    _emit(out, stopped)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.fleet.worker SPEC.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        spec = WorkerSpec.model_validate_json(Path(args[0]).read_bytes())
    except (OSError, ValidationError) as exc:
        print(f"worker spec {args[0]}: {exc}", file=sys.stderr)
        return 2
    threading.current_thread().name = f"fleet-worker-{spec.worker}"
    # Two threads per agent wait on sockets and queues; when a publish wakes them all, the
    # default 5 ms interval makes every waiting thread ask for the interpreter lock 200 times a
    # second (measured: 1,000 agents in 8 processes spent 70 % of their CPU in the kernel).
    # A device runs one agent per interpreter and never meets this.
    sys.setswitchinterval(spec.switch_interval_s)
    # Below the broker and the coordinator: on this machine they share the cores with the
    # whole fleet, where in production the broker has its own machine and every device its CPU.
    os.nice(spec.nice)
    return serve(spec, sys.stdin, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
