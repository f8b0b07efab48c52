"""The demo's view of the fleet over MQTT: wait until every agent is online, then for results."""

from __future__ import annotations

import subprocess
import time

from builder.fleet.session import BrokerOptions, BrokerSession
from builder.fleet.status import TaskResultMessage, fleet_status, results_in
from plada.topics import TopicKind, TopicScheme
from tools.demo.agents import AgentPlan
from tools.devbroker import ADMIN_USER, Broker

_TOPICS = TopicScheme("plada")


def admin_options(broker: Broker) -> BrokerOptions:
    return BrokerOptions(
        url=broker.url,
        username=ADMIN_USER if broker.secure else None,
        password=broker.passwords[ADMIN_USER] if broker.secure else None,
        protocol5=broker.secure,
    )


def wait_online(
    options: BrokerOptions,
    plans: list[AgentPlan],
    procs: list[subprocess.Popen[bytes]],
    timeout_s: float,
) -> None:
    ids = {p.device_id for p in plans}
    deadline = time.monotonic() + timeout_s
    with BrokerSession(options) as session:
        session.collect_retained(_TOPICS.all_availability_filter(), quiet_s=0.1)
        while time.monotonic() < deadline:
            online = set()
            for topic, body in session.snapshot().items():
                parsed = _TOPICS.parse(topic)
                if parsed and parsed.kind is TopicKind.AVAILABILITY and body == b"online":
                    online.add(parsed.device_id)
            if ids <= online:
                return
            dead = [p for p, proc in zip(plans, procs, strict=True) if proc.poll() is not None]
            if dead:
                raise SystemExit(f"demo: agent {dead[0].device_id} exited; see its agent.log")
            time.sleep(0.2)
    raise SystemExit("demo: agents did not come online")


def watch_results(
    options: BrokerOptions, plans: list[AgentPlan], payload_id: str, timeout_s: float
) -> dict[str, TaskResultMessage]:
    """Wait until every agent's result for this payload is in; returns them by device id."""
    ids = {p.device_id for p in plans}
    deadline = time.monotonic() + timeout_s
    with BrokerSession(options) as session:
        session.collect_retained(f"{_TOPICS.base}/device/#", quiet_s=0.2)
        while time.monotonic() < deadline:
            results = {
                r.device_id: r
                for r in results_in(session.snapshot(), _TOPICS)
                if r.device_id in ids and r.payload_id == payload_id
            }
            if results.keys() == ids:
                return results
            time.sleep(0.2)
    raise SystemExit(f"demo: not every agent reported within {timeout_s:.0f} s (see agent.log)")


def wait_retired(
    options: BrokerOptions, plans: list[AgentPlan], task: str, timeout_s: float
) -> None:
    """Wait until every agent's status shows `task` retired. Each look is a fresh read of the
    retained status (a session keeps the first copy of a topic it saw, not later live ones)."""
    ids = {p.device_id for p in plans}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = {
            d.device_id
            for d in fleet_status(options, base_topic=_TOPICS.base)
            if d.status is not None
            and task in d.status.tasks
            and d.status.tasks[task].state == "retired"
        }
        if ids <= done:
            return
        time.sleep(0.5)
    raise SystemExit(f"demo: not every agent retired {task} within {timeout_s:.0f} s")
