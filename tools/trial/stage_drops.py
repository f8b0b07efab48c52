"""The trial's failure stage: an update (the task as version 2, chunked) while links fail.

Over the same links and agents, at the same time:

- a **mid-transfer drop**: the first device on the thinnest profile (``lora``) loses its link for
  ``drop_s`` (longer than 1.5 keepalives, so both ends give the connection up and the agent
  reconnects) once it holds part of the chunks on disk;
- **scheduled drops**: every device whose profile has drops (``nbiot``) plays its seeded schedule
  for the whole stage (tools.trial.drops);
- an **offline device**: the last device's agent is stopped before the publish and started again
  once every other device is ready; the update must reach it when it comes back.

Per device the kernel's counters, and from the agent's own trial log how many task messages it
received against how many the payload has (manifest + chunks): a chunk sent again after a
reconnect shows as a received message beyond the needed ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from plada.payload import payload_digest
from tools.trial.counters import interface_stats
from tools.trial.drops import DropPlayer, DropWindow, drop_plan
from tools.trial.fleet_device import GROUP, FleetDevice
from tools.trial.report_model import StageReport
from tools.trial.resume_report import task_topics
from tools.trial.stages import (
    TrialContext,
    Window,
    agent_row,
    in_parallel,
    is_ready,
    publish_task,
    wait_all,
)

THIN_PROFILE = "lora"


def _chunks_held(device: FleetDevice, digest: str) -> int:
    folder = device.state_dir / "fleet" / "chunks" / digest
    return len(list(folder.glob("c-*.bin"))) if folder.exists() else 0


class LinkDropStage:
    kind = "drop"
    name = "update across link drops and an offline device"

    def __init__(
        self, *, version: int = 2, max_chunk_bytes: int = 1024, drop_s: float = 45.0, seed: int = 0
    ) -> None:
        self.version = version
        self.max_chunk_bytes = max_chunk_bytes
        self.drop_s = drop_s
        self.seed = seed

    def run(self, ctx: TrialContext) -> StageReport:
        task = ctx.kit.task
        path = ctx.kit.payload_version(self.version)
        data = path.read_bytes()
        digest = payload_digest(data)
        messages = task_topics(GROUP, data, max_chunk_bytes=self.max_chunk_bytes, task=task)
        needed = len(messages)
        sent_bytes = sum(messages.values())  # manifest + chunks: what the agent counts
        thin = [d for d in ctx.devices if d.plan.profile.name == THIN_PROFILE]
        cut = thin[0] if thin else ctx.devices[0]
        offline = ctx.devices[-1] if ctx.devices[-1] is not cut else None
        events: dict[str, str] = {}
        window = Window(ctx)
        if offline is not None:
            offline.stop()
            events[offline.name] = "offline during the publish; started once the others were ready"
        players = self._scheduled(ctx, skip={cut.name, *events}, events=events)
        # watching before the publish: on a fast link the chunks are on disk before it returns
        cutter = threading.Thread(target=self._cut, args=(ctx, cut, digest, events), daemon=True)
        cutter.start()
        sent_at = publish_task(ctx, path, max_chunk_bytes=self.max_chunk_bytes)
        online = [d for d in ctx.devices if d is not offline]
        wait_all(
            ctx, lambda d: is_ready(d, task, digest), what=f"v{self.version} ready", devices=online
        )
        since = {d.name: sent_at for d in ctx.devices}
        if offline is not None:
            offline.start()
            since[offline.name] = time.time()
            wait_all(
                ctx, lambda d: is_ready(d, task, digest), what="back and ready", devices=[offline]
            )
        cutter.join(timeout=self.drop_s + 30)
        for player in players:
            player.stop()
        spent, broker_retrans = window.close()
        rows = in_parallel(
            ctx.devices,
            lambda d: agent_row(
                ctx,
                d,
                spent[d.name],
                digest=digest,
                size=sent_bytes,
                since=since[d.name],
                event=events.get(d.name, ""),
                messages_needed=needed,
            ),
        )
        return StageReport(
            name=self.name,
            kind=self.kind,
            description=(
                f"task {task} v{self.version}: {len(data)} bytes, sent as {sent_bytes} in "
                f"{needed} messages (--max-chunk-bytes {self.max_chunk_bytes}), published once "
                "(retained)"
            ),
            started_at=window.started_at,
            seconds=round(time.time() - window.started_at, 2),
            timeout_s=ctx.timeout_s,
            rows=rows,
            broker_tcp_retrans_segs=broker_retrans,
            notes=[
                "messages received beyond the needed ones are task messages the broker sent "
                "again (after a reconnect, or on the offline device's new subscription); time to "
                "ready of the offline device counts from its restart"
            ],
        )

    def _scheduled(
        self, ctx: TrialContext, *, skip: set[str], events: dict[str, str]
    ) -> list[DropPlayer]:
        players = []
        for device in ctx.devices:
            drops = device.plan.profile.drops
            if drops is None or device.name in skip:
                continue
            plan = drop_plan(drops, seed=self.seed, device=device.name, horizon_s=ctx.timeout_s)
            players.append(DropPlayer(device.name, plan, _setter(ctx, device.name)).start())
            events[device.name] = (
                f"its profile's drops ({drops.duration_s:g} s, every ~{drops.every_s:g} s)"
            )
        return players

    def _cut(
        self, ctx: TrialContext, device: FleetDevice, digest: str, events: dict[str, str]
    ) -> None:
        """Take the link down once part of the update has reached the device: a chunk on its disk
        or, at the kernel, a chunk's worth of bytes on its link since the publish. The wire is
        the trigger that cannot be missed: on a lossy link TCP holds the segments after a lost
        one until it is sent again and then hands the agent every chunk at once, so a poll of the
        disk alone saw the update go from no chunk to complete (a flaky trial)."""
        start = _received_bytes(ctx, device)
        deadline = time.monotonic() + ctx.timeout_s
        while time.monotonic() < deadline and not is_ready(device, ctx.kit.task, digest):
            held = _chunks_held(device, digest)
            got = _received_bytes(ctx, device) - start
            if held >= 1 or got >= self.max_chunk_bytes:
                DropPlayer(
                    device.name, [DropWindow(0.0, self.drop_s)], _setter(ctx, device.name)
                ).start().wait()
                events[device.name] = (
                    f"link down {self.drop_s:g} s with {held} chunk(s) on disk and {got} bytes "
                    "received on the link since the publish"
                )
                ctx.log(f"{device.name}: {events[device.name]}")
                return
            time.sleep(0.05)
        events[device.name] = "no drop: the update was complete before a chunk was seen"


def _received_bytes(ctx: TrialContext, device: FleetDevice) -> int:
    """Bytes the device's end of its link has received (the kernel's interface counter)."""
    link = ctx.net.record.device(device.name)
    return int(interface_stats(link.namespace, link.device_if)["stats64"]["rx"]["bytes"])


def _setter(ctx: TrialContext, device: str) -> Callable[[bool], None]:
    return lambda up: ctx.net.set_link(device, up=up)
