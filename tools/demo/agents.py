"""The demo's devices: one `plada-agent run` process per device, configured from its class's
profile (firmware_configs/<class>.toml, read and validated by agent.profiles)."""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import ConfigError
from agent.profiles import DeviceProfile, dump_toml, load_profile
from plada.atomic import write_text_atomic
from tools.demo.steps import REPO, log, run_step
from tools.devbroker import Broker

FIRMWARE = REPO / "firmware_configs"
GROUP = "demo"
WARM_AUTO_MAX_IMAGES = 20_000  # ~2-3 min per device class on 2 cores


@dataclass(frozen=True)
class AgentPlan:
    device_id: str
    device_class: str
    encoder: str
    config_path: Path


def device_profile(device_class: str) -> DeviceProfile:
    path = FIRMWARE / f"{device_class}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in FIRMWARE.glob("*.toml")))
        raise SystemExit(f"demo: no device class {device_class!r} (known: {known})")
    try:
        return load_profile(path)
    except ConfigError as exc:
        raise SystemExit(f"demo: {exc}") from exc


def plan_agents(spec: str, out: Path) -> list[AgentPlan]:
    """`raspberry-pi-4:2,raspberry-pi-5:1` -> rpi-4-1, rpi-4-2, rpi-5-1."""
    plans: list[AgentPlan] = []
    for item in spec.split(","):
        device_class, _, count = item.partition(":")
        profile = device_profile(device_class)
        for i in range(int(count or 1)):
            device_id = f"{device_class.replace('raspberry-pi', 'rpi')}-{i + 1}"
            plans.append(
                AgentPlan(
                    device_id=device_id,
                    device_class=device_class,
                    encoder=profile.device.encoder,
                    config_path=out / "agents" / device_id / "agent.toml",
                )
            )
    return plans


def _mqtt(plan: AgentPlan, args: argparse.Namespace, broker: Broker) -> dict[str, Any]:
    """The demo's whole [mqtt] table: it replaces the profile's (a packaged install reads its
    password from a systemd credential, the demo from a file)."""
    mqtt: dict[str, Any] = {
        "broker": broker.url,
        "group": GROUP,
        "protocol": "5" if broker.secure else "3.1.1",
        "status_interval_s": 30.0,
        "reconnect_max_s": 5.0,
        "probe_dir": str(probe_dir(args).resolve()),
    }
    if broker.secure:
        mqtt |= {
            "username": plan.device_id,
            "password_file": str(broker.password_file(plan.device_id)),
        }
    return mqtt


def demo_tasks(args: argparse.Namespace) -> list[str]:
    """The tasks the demo teaches the fleet, in order."""
    second = getattr(args, "second_task", None)
    return [args.task, *([second] if second and second != args.task else [])]


def probe_dir(args: argparse.Namespace) -> Path:
    """One probe folder for every demo task: the class folders of each task's test split side
    by side (each head scores only its own classes' folders; the demo's targets share none)."""
    tasks = demo_tasks(args)
    if len(tasks) == 1:
        return Path(args.data) / "targets" / tasks[0] / "test"
    return Path(args.out) / "probe"


def link_probe_dir(args: argparse.Namespace) -> None:
    """Build the combined probe folder (symlinks) that `probe_dir` names, if there are two tasks."""
    root = probe_dir(args)
    tasks = demo_tasks(args)
    if len(tasks) == 1:
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for task in tasks:
        for folder in sorted((Path(args.data) / "targets" / task / "test").iterdir()):
            if folder.is_dir():
                if (root / folder.name).exists():
                    raise SystemExit(f"demo: class {folder.name} is in two tasks' test splits")
                (root / folder.name).symlink_to(folder.resolve())


def _overrides(
    plan: AgentPlan, args: argparse.Namespace, public_key: Path
) -> dict[str, dict[str, Any]]:
    """The demo's paths and trust over the class profile's packaged defaults."""
    return {
        "corpus": {"path": str((args.data / "ref-v1").resolve())},
        "encoder": {"file": str((args.out / "encoders" / f"{plan.encoder}.onnx").resolve())},
        "state": {"dir": str((plan.config_path.parent / "state").resolve())},
        "cache": {"dir": str((args.out / "feature-cache" / plan.device_class).resolve())},
        "trust": {"public_keys": [str(public_key.resolve())], "allow_unsigned": False},
    }


def agent_table(
    plan: AgentPlan, args: argparse.Namespace, broker: Broker, public_key: Path
) -> dict[str, Any]:
    """The agent config of one demo device: its class profile with the demo's overrides."""
    table = device_profile(plan.device_class).agent_table(
        device_id=plan.device_id, overrides=_overrides(plan, args, public_key)
    )
    table["mqtt"] = _mqtt(plan, args, broker)
    return table


def write_agent_configs(
    plans: list[AgentPlan], args: argparse.Namespace, broker: Broker, public_key: Path
) -> None:
    for plan in plans:
        table = agent_table(plan, args, broker, public_key)
        plan.config_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(plan.config_path.parent / "state", ignore_errors=True)  # train afresh
        write_text_atomic(plan.config_path, dump_toml(table))
        run_step(
            [sys.executable, "-m", "agent", "check-config", "--config", str(plan.config_path)],
            what=f"check config of {plan.device_id}",
        )


def warm_caches(plans: list[AgentPlan], *, mode: str, corpus_size: int) -> None:
    if mode == "never" or (mode == "auto" and corpus_size > WARM_AUTO_MAX_IMAGES):
        log(
            f"not warming feature caches ({corpus_size} corpus images, --warm {mode}): each agent "
            "embeds only the images the payload keeps, on demand"
        )
        return
    seen: set[str] = set()
    for plan in plans:
        if plan.device_class in seen:
            continue
        seen.add(plan.device_class)
        run_step(
            [sys.executable, "-m", "agent", "warm-cache", "--config", str(plan.config_path)],
            what=f"warm feature cache of {plan.device_class} ({plan.encoder})",
        )


def start_agents(plans: list[AgentPlan]) -> list[subprocess.Popen[bytes]]:
    procs = []
    for plan in plans:
        with (plan.config_path.parent / "agent.log").open("wb") as log_file:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "agent", "run", "--config", str(plan.config_path)],
                    stdout=log_file,
                    stderr=log_file,
                    cwd=REPO,
                )
            )
    log(f"started {len(plans)} agents: {', '.join(p.device_id for p in plans)}")
    return procs


def stop_agents(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
