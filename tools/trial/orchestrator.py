"""A field trial, as its list of stages: bring the fleet up on its links, run each stage in turn
over the same links and agents, tear everything down, and return the report.

    report = run_trial(kit, plan_fleet(DEFAULT_FLEET, kit.classes, profiles), folder=work)

Before the timed part (reported separately as ``prepare_seconds``): the kit's encoders, task and
images are built or reused, and each device class's feature cache is warmed with ``plada-agent
warm-cache``, so the timed part measures the links and the devices' training, not a cold
embedding of the whole corpus. The timed part: namespaces and links, mosquitto in the broker
namespace, one ``plada-agent run`` per device namespace (each with its Prometheus endpoint on the
namespace's loopback), every stage, a final scrape, teardown.

The stages (``STAGES``, run in ``DEFAULT_STAGES`` order): the task as PLADA, images and weights,
an update across link drops and an offline device, then a staged rollout promoted and one
aborted (tools.trial.stage_rollout).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import parse_config
from agent.profiles import dump_toml
from plada.payload import inspect_payload, payload_digest
from tools.trial.broker import NamespaceBroker, mosquitto_version
from tools.trial.clients import REPO
from tools.trial.errors import TrialRunError
from tools.trial.fleet_device import METRICS_URL, FleetDevice, trial_mqtt
from tools.trial.fleet_plan import PlannedDevice
from tools.trial.kit import TaskKit
from tools.trial.network import DeviceSpec, TrialNetwork
from tools.trial.report_model import DeviceInfo, MetricsScrape, StageReport, TrialReport
from tools.trial.scrape import figures, scrape
from tools.trial.stage_drops import LinkDropStage
from tools.trial.stage_rollout import RolloutStage
from tools.trial.stages import DeliveryStage, PladaStage, Stage, TrialContext, in_parallel
from tools.trial.targets import check_targets

STAGES: dict[str, Callable[[], Stage]] = {
    "plada": PladaStage,
    "images": lambda: DeliveryStage("images"),
    "weights": lambda: DeliveryStage("weights"),
    "drop": LinkDropStage,
    "promote": lambda: RolloutStage("promoted"),
    "abort": lambda: RolloutStage("aborted"),
}
DEFAULT_STAGES = ("plada", "images", "weights", "drop", "promote", "abort")


def default_stages(names: Sequence[str] = DEFAULT_STAGES) -> list[Stage]:
    """The trial's stages, in order."""
    unknown = [n for n in names if n not in STAGES]
    if unknown:
        raise TrialRunError(f"unknown stage {unknown[0]!r}; known: {', '.join(STAGES)}")
    return [STAGES[name]() for name in names]


@dataclass(frozen=True)
class TrialSettings:
    stage_timeout_s: float = 300.0  # the longest a stage waits for its slowest device
    settle_s: float = 3.0  # after a stage: the last acks cross a 2 s queue
    keepalive_s: int = 20  # the drop stage's 45 s outage outlasts it on both ends
    startup_timeout_s: float = 240.0  # every agent connected (ten agents load on two cores)
    warm: str = "selection"  # one of WARM_MODES


def _log(message: str) -> None:
    print(f"[trial {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text(encoding="utf-8").split()[:3]


WARM_MODES = ("selection", "corpus", "none")


def warm_caches(kit: TaskKit, fleet: Sequence[PlannedDevice], folder: Path, mode: str) -> None:
    """Fill each device class's feature cache (its devices share it) before the timed part.

    ``selection``: ``plada-agent apply`` of the task once per class in a throwaway state folder,
    which embeds exactly the corpus images the payload keeps (what every device of the class will
    read); ``corpus``: ``plada-agent warm-cache``, the whole corpus (minutes per class on the full
    data); ``none``: the devices embed on demand inside the timed part.
    """
    if mode == "none":
        return
    for device_class in dict.fromkeys(d.device_class for d in fleet):
        where = folder / device_class
        shutil.rmtree(where, ignore_errors=True)
        table = kit.agent_table(
            device_id=f"warm-{device_class}", device_class=device_class, folder=where
        )
        table["mqtt"] = {}  # warming never connects
        path = folder / f"warm-{device_class}.toml"
        folder.mkdir(parents=True, exist_ok=True)
        config = parse_config(table).model_dump(mode="json", exclude_none=True)
        path.write_text(dump_toml(config), encoding="utf-8")
        _log(f"warming the feature cache of {device_class} ({kit.encoder(device_class)}): {mode}")
        cmd = [sys.executable, "-m", "agent"]
        if mode == "corpus":
            cmd += ["warm-cache", "--config", str(path)]
        else:
            cmd += ["apply", str(kit.payload_path), "--config", str(path)]
        done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TrialRunError(f"warming {device_class} failed: {done.stderr[-2000:]}")


def _wait_connected(net: TrialNetwork, devices: list[FleetDevice], timeout_s: float) -> None:
    """Until every agent's own endpoint says its link is connected."""
    waiting = {d.name: d for d in devices}
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        for name in list(waiting):
            if waiting[name].daemon.exited():
                raise TrialRunError(
                    f"{name}: agent exited: {waiting[name].daemon.log_text()[-2000:]}"
                )
            samples = scrape(net, name, METRICS_URL)
            if samples is not None and figures(samples)["link_connected"] == 1:
                del waiting[name]
        time.sleep(1.0)
    if waiting:
        raise TrialRunError(f"agents not connected within {timeout_s:g} s: {sorted(waiting)}")


def _task_info(kit: TaskKit) -> dict[str, Any]:
    data = kit.payload_path.read_bytes()
    payload = inspect_payload(data, trusted_keys={}).payload
    return {
        "name": payload.task,
        "version": payload.version,
        "payload_bytes": len(data),
        "payload_id": payload_digest(data),
        "num_indices": len(payload.indices),
        "classes": list(payload.class_names),
    }


def run_trial(
    kit: TaskKit,
    fleet: Sequence[PlannedDevice],
    *,
    folder: Path,
    stages: Sequence[Stage] | None = None,
    settings: TrialSettings = TrialSettings(),
    log: Callable[[str], None] = _log,
) -> TrialReport:
    started_at = time.time()
    clock = time.monotonic()
    folder = folder.resolve()
    load_before = _loadavg()
    warm_caches(kit, fleet, folder / "warm", settings.warm)
    prepare_s = time.monotonic() - clock
    clock = time.monotonic()
    specs = [DeviceSpec(d.name, d.profile) for d in fleet]
    reports: list[StageReport] = []
    scrapes: list[MetricsScrape] = []
    with TrialNetwork(specs, guardian_log=folder / "guardian.log") as net:
        trial_id = net.trial_id
        log(f"trial {trial_id}: {len(fleet)} devices on their links")
        with NamespaceBroker(net, folder / "broker") as broker:
            devices = [_device(net, broker, kit, d, folder, settings) for d in fleet]
            try:
                for device in devices:
                    device.start()
                _wait_connected(net, devices, settings.startup_timeout_s)
                log(f"{len(devices)} agents connected")
                time.sleep(settings.settle_s)  # their subscriptions and first status go out
                ctx = TrialContext(
                    net=net,
                    broker=broker,
                    kit=kit,
                    devices=devices,
                    folder=folder,
                    timeout_s=settings.stage_timeout_s,
                    settle_s=settings.settle_s,
                    log=log,
                )
                for stage in stages if stages is not None else default_stages():
                    log(f"stage: {stage.name}")
                    reports.append(stage.run(ctx))
                scrapes = in_parallel(devices, lambda d: _final_scrape(net, d))
            finally:
                in_parallel(devices, lambda d: d.stop())
    timed_s = time.monotonic() - clock
    return TrialReport(
        trial_id=trial_id,
        started_at=started_at,
        prepare_seconds=round(prepare_s, 1),
        timed_seconds=round(timed_s, 1),
        machine={
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "mosquitto": mosquitto_version(),
            "loadavg_before": load_before,
            "loadavg_after": _loadavg(),
        },
        task=_task_info(kit),
        kit=kit.describe(),
        devices=[
            DeviceInfo(
                name=d.name,
                device_class=d.device_class,
                encoder=kit.encoder(d.device_class),
                profile=d.profile.name,
            )
            for d in fleet
        ],
        profiles={d.profile.name: d.profile.model_dump(mode="json") for d in fleet},
        stages=reports,
        scrapes=scrapes,
        targets=check_targets(reports, timed_s=timed_s, devices=len(fleet)),
        notes=[
            f"feature caches warmed before the timed part: {settings.warm} (selection: "
            "plada-agent apply of the task once per device class, which embeds the images the "
            "payload keeps; the class's devices share that cache, and still embed the test "
            "images inside the timed part to measure their accuracy)",
            "the agents' Prometheus endpoints are scraped inside each device namespace (its own "
            "loopback), so the scrapes never cross the emulated links",
        ],
    )


def _final_scrape(net: TrialNetwork, device: FleetDevice) -> MetricsScrape:
    samples = scrape(net, device.name, METRICS_URL) or []
    dumped = [s.model_dump() for s in samples]
    return MetricsScrape(device=device.name, at=time.time(), samples=dumped)


def _device(
    net: TrialNetwork,
    broker: NamespaceBroker,
    kit: TaskKit,
    planned: PlannedDevice,
    folder: Path,
    settings: TrialSettings,
) -> FleetDevice:
    where = folder / "devices" / planned.name
    shutil.rmtree(where / "state", ignore_errors=True)  # every trial trains afresh
    table = kit.agent_table(device_id=planned.name, device_class=planned.device_class, folder=where)
    table["mqtt"] = trial_mqtt(
        broker.url_for(planned.name),
        kit.probe_dir,
        keepalive_s=settings.keepalive_s,
        group=planned.group,
    )
    return FleetDevice(net, planned, where, table, encoder=kit.encoder(planned.device_class))
