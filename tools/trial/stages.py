"""The stages of a field trial: each delivers something to every device over its link and returns
one row per device (tools.trial.report_model).

    PladaStage        the task payload, published once (``plada-build publish``'s code), until every
                      agent has trained its head and reported its accuracy on the test images
    DeliveryStage     the same task as images (the payload's selection, JPEG q30 + Zstd) or as
                      head weights (each device's own trained head, Zstd), one message per device

A stage is anything with a ``name``, a ``kind`` and ``run(ctx) -> StageReport``; the orchestrator
runs its list in order over the same links and agents. Every stage reads the kernel counters of
each link before and after, so its rows count only its own traffic.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypedDict, TypeVar

import zstandard

from plada.payload import payload_digest
from tools.trial.broker import NamespaceBroker
from tools.trial.clients import REPO, Subscriber, publish
from tools.trial.counters import LinkCounters, tcp_counters
from tools.trial.errors import TrialRunError
from tools.trial.fleet_device import GROUPS, FleetDevice
from tools.trial.kit import TaskKit
from tools.trial.mqtt_client import PUBACK, publish_size
from tools.trial.network import BROKER, TrialNetwork
from tools.trial.report_model import DeviceRow, StageReport
from tools.trial.scrape import METRICS_FIGURES, scrape_figures
from tools.trial.shaping import tbf_burst_bytes

POLL_S = 0.5
T = TypeVar("T")


@dataclass
class TrialContext:
    net: TrialNetwork
    broker: NamespaceBroker
    kit: TaskKit
    devices: list[FleetDevice]
    folder: Path
    timeout_s: float  # how long a stage waits for its slowest device
    settle_s: float  # after the last device: the last acks cross the slowest link
    log: Callable[[str], None]
    shared: dict[str, Any] = field(default_factory=dict)  # what a stage leaves for later ones


class Stage(Protocol):
    name: str
    kind: str

    def run(self, ctx: TrialContext) -> StageReport: ...


def min_time_s(device: FleetDevice, nbytes: int) -> float | None:
    """``nbytes`` at the device's configured downlink rate, less what the token bucket lets
    through at once when full: no delivery can be faster."""
    down = device.plan.profile.down
    if down.rate_kbit is None:
        return None
    return round(max(0, nbytes - tbf_burst_bytes(down)) * 8 / (down.rate_kbit * 1000), 2)


def in_parallel(devices: list[FleetDevice], work: Callable[[FleetDevice], T]) -> list[T]:
    """``work`` for every device at once, results in device order: each row reads files and
    scrapes its agent in a subprocess, which on a loaded machine takes seconds apiece."""
    with ThreadPoolExecutor(max_workers=max(1, len(devices))) as pool:
        return list(pool.map(work, devices))


class LinkFields(TypedDict):
    wire_down_bytes: int
    wire_up_bytes: int
    wire_down_packets: int
    lost_down_packets: int
    lost_up_packets: int
    tcp_retrans_segs: int
    connects: int
    link_downs: int


def link_fields(spent: LinkCounters) -> LinkFields:
    """The DeviceRow fields read from one link's counter difference."""
    return {
        "wire_down_bytes": spent.down.wire_bytes,
        "wire_up_bytes": spent.up.wire_bytes,
        "wire_down_packets": spent.down.wire_packets,
        "lost_down_packets": spent.down.lost_packets,
        "lost_up_packets": spent.up.lost_packets,
        "tcp_retrans_segs": spent.tcp.retrans_segs,
        "connects": spent.tcp.connects,
        "link_downs": spent.link_downs,
    }


class Window:
    """Kernel counters of every link (and the broker's TCP resends) around a stage."""

    def __init__(self, ctx: TrialContext) -> None:
        self.ctx = ctx
        self.before = {d.name: ctx.net.counters(d.name) for d in ctx.devices}
        self.broker_before = tcp_counters(ctx.net.namespace(BROKER), connects=0)
        self.started_at = time.time()

    def close(self) -> tuple[dict[str, LinkCounters], int]:
        time.sleep(self.ctx.settle_s)
        spent = {
            d.name: self.ctx.net.counters(d.name).minus(self.before[d.name])
            for d in self.ctx.devices
        }
        after = tcp_counters(self.ctx.net.namespace(BROKER), connects=0)
        return spent, after.retrans_segs - self.broker_before.retrans_segs


def wait_all(
    ctx: TrialContext,
    done: Callable[[FleetDevice], bool],
    *,
    what: str,
    devices: list[FleetDevice] | None = None,
) -> dict[str, float]:
    """Poll until every device is done or the stage's time runs out; device -> when it was seen."""
    devices = ctx.devices if devices is None else devices
    seen: dict[str, float] = {}
    deadline = time.monotonic() + ctx.timeout_s
    while len(seen) < len(devices) and time.monotonic() < deadline:
        for device in devices:
            if device.name not in seen and done(device):
                seen[device.name] = time.time()
                ctx.log(f"{device.name}: {what} ({len(seen)}/{len(devices)})")
        time.sleep(POLL_S)
    return seen


def publish_task(ctx: TrialContext, payload: Path, *, max_chunk_bytes: int | None = None) -> float:
    """Publish a task payload to every trial group (canary and rest) from the broker namespace;
    when it was sent (wall clock)."""
    argv = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "tools.trial.publish_task"]
    argv += [str(payload), "--url", ctx.broker.local_url]
    for group in GROUPS:
        argv += ["--group", group]
    if max_chunk_bytes is not None:
        argv += ["--max-chunk-bytes", str(max_chunk_bytes)]
    out = ctx.net.run(BROKER, argv, timeout_s=120)
    sent: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    ctx.log(f"published {payload.name} in {sent['messages']} message(s)")
    return float(sent["sent_at"])


def is_ready(device: FleetDevice, task: str, digest: str) -> bool:
    result = device.result(task)
    return result is not None and result.get("payload_id") == digest


def agent_row(
    ctx: TrialContext,
    device: FleetDevice,
    spent: LinkCounters,
    *,
    digest: str,
    size: int,
    since: float,
    event: str = "",
    messages_needed: int | None = None,
) -> DeviceRow:
    """A row for a task payload delivered to the real agent: its result, trial log and scrape."""
    result = device.result(ctx.kit.task)
    ok = result is not None and result.get("payload_id") == digest
    summary = device.task_summary(digest)
    framing = summary.overhead_bytes if summary else 0
    figures = scrape_figures(ctx.net, device.name) or {}
    last = device.last_byte_at(digest)
    return DeviceRow(
        device=device.name,
        device_class=device.plan.device_class,
        profile=device.plan.profile.name,
        delivered=ok,
        payload_bytes=size,
        framing_bytes=framing,
        device_counted_bytes=summary.payload_bytes if summary else None,
        **link_fields(spent),
        time_to_ready_s=round(result["finished_at"] - since, 2) if ok and result else None,
        device_time_to_model_s=result.get("time_to_model_s") if ok and result else None,
        received_s=None if last is None else round(last - since, 2),
        min_time_s=min_time_s(device, size + framing),
        accuracy=result.get("probe_accuracy") if ok and result else None,
        accuracy_note=f"agent's head on {result.get('probe_size')} test images"
        if ok and result
        else "not ready",
        scraped={k: v for k, v in figures.items() if k in METRICS_FIGURES},
        event=event,
        messages_needed=messages_needed,
        messages_received=summary.messages if summary else None,
    )


class PladaStage:
    """The task payload, published once, retained, on the task's topics of the trial group."""

    name = "PLADA task payload"
    kind = "plada"

    def run(self, ctx: TrialContext) -> StageReport:
        data = ctx.kit.payload_path.read_bytes()
        digest = payload_digest(data)
        task = ctx.kit.task
        window = Window(ctx)
        sent_at = publish_task(ctx, ctx.kit.payload_path)
        wait_all(ctx, lambda d: is_ready(d, task, digest), what="ready")
        spent, broker_retrans = window.close()
        rows = in_parallel(
            ctx.devices,
            lambda d: agent_row(
                ctx, d, spent[d.name], digest=digest, size=len(data), since=sent_at
            ),
        )
        ctx.shared["plada_accuracy"] = {r.device: r.accuracy for r in rows}
        return StageReport(
            name=self.name,
            kind=self.kind,
            description=f"task {task}: {len(data)} bytes, signed, published once (retained)",
            started_at=window.started_at,
            seconds=round(time.time() - window.started_at, 2),
            timeout_s=ctx.timeout_s,
            rows=rows,
            broker_tcp_retrans_segs=broker_retrans,
            notes=[
                "time to ready: from the publish to the agent's result (head trained, accuracy "
                "measured on the test images); the agent's own figure starts at its first byte",
                "wire down counts every frame broker -> device in the stage: the payload's own "
                "frames (two for 2 KiB), the broker's acknowledgements (TCP ACK, PUBACK, ~70 B "
                "each) of the agent's own reports sent up (status changes, result: the wire up "
                "column), and on a lossy link a full-size resend of any lost payload frame",
            ],
        )


class DeliveryStage:
    """The same task as images or as head weights: one QoS 1 message per device, over the same
    links, from a publisher in the broker namespace to a subscriber in the device's namespace."""

    def __init__(self, kind: str) -> None:
        if kind not in ("images", "weights"):
            raise TrialRunError(f"delivery kind {kind!r}: images or weights")
        self.kind = kind
        self.name = "task as images" if kind == "images" else "task as head weights"

    def _blob(self, ctx: TrialContext, device: FleetDevice) -> Path:
        folder = ctx.folder / "blobs"
        folder.mkdir(parents=True, exist_ok=True)
        if self.kind == "images":
            path = folder / f"images-{device.plan.device_class}.bin"
            if not path.exists():
                path.write_bytes(ctx.kit.images_pack(device.plan.device_class))
            return path
        head = device.head_file(ctx.kit.task)
        if head is None:
            raise TrialRunError(f"{device.name}: no installed head to send as weights")
        path = folder / f"weights-{device.name}.bin"
        path.write_bytes(zstandard.ZstdCompressor(level=19).compress(head.read_bytes()))
        return path

    def run(self, ctx: TrialContext) -> StageReport:
        blobs = {d.name: self._blob(ctx, d) for d in ctx.devices}
        topics = {d.name: f"trial/{self.kind}/{d.name}" for d in ctx.devices}
        subs = {
            d.name: Subscriber(
                ctx.net,
                d.name,
                ctx.broker.url_for(d.name),
                topics[d.name],
                count=1,
                timeout_s=ctx.timeout_s,
            )
            for d in ctx.devices
        }
        window = Window(ctx)
        sent: dict[str, dict[str, Any]] = {}

        def send(device: FleetDevice) -> None:
            sent[device.name] = publish(
                ctx.net,
                BROKER,
                ctx.broker.local_url,
                topics[device.name],
                payload_file=blobs[device.name],
                timeout_s=60,
            )

        threads = [threading.Thread(target=send, args=(d,)) for d in ctx.devices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ctx.log(f"sent the task as {self.kind} to {len(sent)} devices")
        got = {name: sub.result(timeout_s=ctx.timeout_s + 60) for name, sub in subs.items()}
        spent, broker_retrans = window.close()
        rows = [
            self._row(ctx, d, spent[d.name], blobs[d.name], sent[d.name], got[d.name], topics)
            for d in ctx.devices
        ]
        sizes = sorted({r.payload_bytes for r in rows})
        return StageReport(
            name=self.name,
            kind=self.kind,
            description=self._describe(sizes),
            started_at=window.started_at,
            seconds=round(time.time() - window.started_at, 2),
            timeout_s=ctx.timeout_s,
            rows=rows,
            broker_tcp_retrans_segs=broker_retrans,
        )

    def _describe(self, sizes: list[int]) -> str:
        span = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        if self.kind == "images":
            return (
                f"the payload's selected images with their labels, at most the class encoder's "
                f"input size, JPEG q30, Zstd-19: {span} bytes per device"
            )
        return f"each device's own trained head (ONNX), Zstd-19: {span} bytes per device"

    def _row(
        self,
        ctx: TrialContext,
        device: FleetDevice,
        spent: LinkCounters,
        blob: Path,
        sent: dict[str, Any],
        got: dict[str, Any],
        topics: dict[str, str],
    ) -> DeviceRow:
        size = blob.stat().st_size
        framing = publish_size(topics[device.name], size, qos=1) - size + PUBACK
        ok = bool(got.get("ok"))
        accuracy, note = (
            None,
            "not measured: lossy re-encoding (see bench/results/alternatives.json)",
        )
        if self.kind == "weights":
            accuracy = ctx.shared.get("plada_accuracy", {}).get(device.name)
            note = "the device's own head (the same weights): the PLADA stage's accuracy"
        return DeviceRow(
            device=device.name,
            device_class=device.plan.device_class,
            profile=device.plan.profile.name,
            delivered=ok,
            payload_bytes=size,
            framing_bytes=framing,
            device_counted_bytes=int(got.get("payload_bytes") or 0),
            **link_fields(spent),
            time_to_ready_s=round(got["last_at"] - sent["connected_at"], 2) if ok else None,
            received_s=round(got["last_at"] - sent["connected_at"], 2) if ok else None,
            min_time_s=min_time_s(device, size + framing),
            accuracy=accuracy,
            accuracy_note=note,
        )
