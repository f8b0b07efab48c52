"""`make demo`: builder -> broker -> agents of two device classes -> one publish -> a table.

    python -m tools.demo --data data --out build/demo

1. a signing key, the device encoders (`plada-build export-encoder`), and a task for the `fashion`
   target at a 2 KiB budget (`plada-build task --auto`, simulated for every device class);
2. a broker on a free local port (mosquitto with the shipped password file + ACL scheme when
   installed, otherwise an embedded amqtt broker), left running afterwards so that
   `plada-build fleet status` works; the next demo run replaces it;
3. agents as separate `plada-agent run` processes with their own state folders, configured from
   firmware_configs/<class>.toml, each class's feature cache warmed once (`plada-agent warm-cache`);
4. one retained publish; wait until every agent reports its result; print the table.

Everything expensive (encoders, payload, embedding and feature caches) is reused on a second run;
agent state folders are fresh each run so every agent really trains again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware_configs"
DEFAULT_AGENTS = "raspberry-pi-4:2,x86-dev:1"
GROUP = "demo"
ADMIN = "builder"


@dataclass(frozen=True)
class AgentPlan:
    device_id: str
    device_class: str
    encoder: str
    config_path: Path


def _log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _run(cmd: list[str], *, what: str) -> None:
    """Run a CLI step with its output (and progress bars) on the terminal; stop on failure."""
    _log(f"{what}: {' '.join(str(c) for c in cmd[2:])}")
    started = time.monotonic()
    code = subprocess.run(cmd, cwd=REPO, check=False).returncode
    if code != 0:
        raise SystemExit(f"demo: {what} failed (exit {code})")
    _log(f"{what}: done in {time.monotonic() - started:.1f} s")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"demo: broker did not start on port {port}")


# -- broker ---------------------------------------------------------------------------------------
def _stop_old_broker(folder: Path) -> None:
    pid_file = folder / "broker.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text(encoding="utf-8").split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"mosquitto" in cmdline or b"tools.demo" in cmdline:
            os.kill(pid, signal.SIGTERM)
            _log(f"stopped the previous demo broker (pid {pid})")
            time.sleep(0.5)
    except (OSError, ValueError):
        pass
    pid_file.unlink(missing_ok=True)


def start_broker(folder: Path, users: list[str]) -> dict[str, Any]:
    """Start a detached broker; returns url, kind and the password files of every user."""
    folder = folder.resolve()  # agent configs need absolute paths
    _stop_old_broker(folder)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    port = _free_port()
    passwords = {u: hashlib.sha256(os.urandom(16)).hexdigest()[:24] for u in [ADMIN, *users]}
    files: dict[str, str] = {}
    for user, pw in passwords.items():
        path = folder / f"{user}.password"
        path.write_text(pw + "\n", encoding="utf-8")
        path.chmod(0o600)
        files[user] = str(path)
    log = (folder / "broker.log").open("ab")
    mosquitto = shutil.which("mosquitto")
    if mosquitto and shutil.which("mosquitto_passwd"):
        plain = folder / "passwd"
        plain.write_text("".join(f"{u}:{p}\n" for u, p in passwords.items()), encoding="utf-8")
        subprocess.run(["mosquitto_passwd", "-U", str(plain)], check=True)
        shutil.copyfile(FIRMWARE / "mosquitto.acl", folder / "acl")
        (folder / "data").mkdir()
        user_line = "user root\n" if os.geteuid() == 0 else ""
        (folder / "mosquitto.conf").write_text(
            f"{user_line}per_listener_settings false\nallow_anonymous false\n"
            f"password_file {plain}\nacl_file {folder / 'acl'}\n"
            f"persistence true\npersistence_location {folder / 'data'}/\n"
            f"log_dest stderr\nlistener {port} 127.0.0.1\n",
            encoding="utf-8",
        )
        proc = subprocess.Popen(
            [mosquitto, "-c", str(folder / "mosquitto.conf")],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        kind, secure = "mosquitto", True
    else:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.demo", "--serve-amqtt", str(port)],
            stdout=log,
            stderr=log,
            cwd=REPO,
            start_new_session=True,
        )
        kind, secure = "amqtt (embedded; mosquitto not installed)", False
    log.close()
    (folder / "broker.pid").write_text(f"{proc.pid}\n", encoding="utf-8")
    _wait_port(port)
    info = {
        "url": f"mqtt://127.0.0.1:{port}",
        "kind": kind,
        "secure": secure,
        "pid": proc.pid,
        "password_files": files,
    }
    (folder / "broker.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    _log(f"broker: {kind} on {info['url']} (pid {proc.pid})")
    return info


def serve_amqtt(port: int) -> int:
    """The zero-install fallback broker (MQTT 3.1.1, anonymous, loopback only)."""
    import asyncio

    from amqtt.broker import Broker

    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }

    async def serve() -> None:
        broker = Broker(config)
        await broker.start()
        while True:
            await asyncio.sleep(3600)

    asyncio.run(serve())
    return 0


# -- builder side ---------------------------------------------------------------------------------
def _spec_args(spec: str) -> list[str]:
    from plada.encoders import parse_encoder_spec

    parsed = parse_encoder_spec(spec)
    return [
        "--model",
        parsed.model,
        "--size",
        str(parsed.size),
        *(["--int8"] if parsed.int8 else []),
    ]


def ensure_encoders(specs: list[str], out: Path, corpus: Path) -> None:
    for spec in specs:
        if (out / f"{spec}.onnx").exists() and (out / f"{spec}.json").exists():
            _log(f"encoder {spec}: cached")
            continue
        cmd = [
            sys.executable,
            "-m",
            "builder",
            "export-encoder",
            *_spec_args(spec),
            "--out",
            str(out),
        ]
        if spec.endswith("-int8"):
            cmd += ["--calibration-corpus", str(corpus)]
        _run(cmd, what=f"export encoder {spec}")


def ensure_task(
    args: argparse.Namespace, specs: list[str], key: Path
) -> tuple[Path, dict[str, Any]]:
    out: Path = args.out
    payload = out / f"{args.task}-{args.budget}.plada"
    report_dir = out / f"{args.task}-{args.budget}-report"
    stamp = {
        "data": _data_stamp(args.data),
        "task": args.task,
        "budget": args.budget,
        "devices": specs,
        "key": hashlib.sha256(key.read_bytes()).hexdigest(),
    }
    stamp_path = out / "task-stamp.json"
    if (
        payload.exists()
        and (report_dir / "report.json").exists()
        and stamp_path.exists()
        and json.loads(stamp_path.read_text(encoding="utf-8")) == stamp
    ):
        _log(f"task {payload.name}: cached")
    else:
        _run(
            [
                sys.executable,
                "-m",
                "builder",
                "task",
                "--corpus",
                str(args.data / "ref-v1"),
                "--target",
                str(args.data / "targets" / args.task),
                "--budget",
                args.budget,
                "--auto",
                "--key",
                str(key),
                "--out",
                str(payload),
                "--report",
                str(report_dir),
                "--devices",
                ",".join(specs),
                "--encoder-dir",
                str(out / "encoders"),
            ],
            what=f"build task {args.task} at {args.budget}",
        )
        stamp_path.write_text(json.dumps(stamp), encoding="utf-8")
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    return payload, report


def _data_stamp(data: Path) -> str:
    info = data / "build-info.json"
    body = info.read_bytes() if info.exists() else str(data.resolve()).encode()
    return hashlib.sha256(body).hexdigest()[:16]


# -- agents ---------------------------------------------------------------------------------------
def _profile(device_class: str) -> dict[str, Any]:
    """firmware_configs/<class>.toml as a table (the agent validates it: check-config below)."""
    import tomllib

    path = FIRMWARE / f"{device_class}.toml"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in FIRMWARE.glob("*.toml")))
        raise SystemExit(f"demo: no device class {device_class!r} (known: {known})")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _toml(table: dict[str, Any]) -> str:
    """TOML for an agent config table: scalars and lists at top level or one table deep."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))  # a JSON string is a valid TOML basic string

    top = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for name, sub in table.items():
        if isinstance(sub, dict):
            top.append(f"\n[{name}]")
            top += [f"{k} = {value(v)}" for k, v in sub.items()]
    return "\n".join(top) + "\n"


def plan_agents(spec: str, out: Path) -> list[AgentPlan]:
    plans: list[AgentPlan] = []
    for item in spec.split(","):
        device_class, _, count = item.partition(":")
        profile = _profile(device_class)
        for i in range(int(count or 1)):
            device_id = f"{device_class.replace('raspberry-pi', 'rpi')}-{i + 1}"
            plans.append(
                AgentPlan(
                    device_id=device_id,
                    device_class=device_class,
                    encoder=profile["device"]["encoder"],
                    config_path=out / "agents" / device_id / "agent.toml",
                )
            )
    return plans


def write_agent_configs(
    plans: list[AgentPlan], args: argparse.Namespace, broker: dict[str, Any], public_key: Path
) -> None:
    for plan in plans:
        table = dict(_profile(plan.device_class)["agent"])
        table["device_id"] = plan.device_id
        overrides: dict[str, dict[str, Any]] = {
            "corpus": {"path": str((args.data / "ref-v1").resolve())},
            "encoder": {"file": str((args.out / "encoders" / f"{plan.encoder}.onnx").resolve())},
            "state": {"dir": str((plan.config_path.parent / "state").resolve())},
            "cache": {"dir": str((args.out / "feature-cache" / plan.device_class).resolve())},
            "trust": {"public_keys": [str(public_key.resolve())], "allow_unsigned": False},
        }
        for key, section in overrides.items():
            table[key] = {**table.get(key, {}), **section}
        mqtt: dict[str, Any] = {
            "broker": broker["url"],
            "group": GROUP,
            "protocol": "5" if broker["secure"] else "3.1.1",
            "status_interval_s": 30.0,
            "reconnect_max_s": 5.0,
            "probe_dir": str((args.data / "targets" / args.task / "test").resolve()),
        }
        if broker["secure"]:
            mqtt |= {
                "username": plan.device_id,
                "password_file": broker["password_files"][plan.device_id],
            }
        table["mqtt"] = mqtt
        plan.config_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(plan.config_path.parent / "state", ignore_errors=True)  # train afresh
        plan.config_path.write_text(_toml(table), encoding="utf-8")
        _run(
            [sys.executable, "-m", "agent", "check-config", "--config", str(plan.config_path)],
            what=f"check config of {plan.device_id}",
        )


WARM_AUTO_MAX_IMAGES = 20_000  # ~2-3 min per device class on 2 cores


def warm_caches(plans: list[AgentPlan], *, mode: str, corpus_size: int) -> None:
    if mode == "never" or (mode == "auto" and corpus_size > WARM_AUTO_MAX_IMAGES):
        _log(
            f"not warming feature caches ({corpus_size} corpus images, --warm {mode}): each agent "
            "embeds only the images the payload keeps, on demand"
        )
        return
    seen: set[str] = set()
    for plan in plans:
        if plan.device_class in seen:
            continue
        seen.add(plan.device_class)
        _run(
            [sys.executable, "-m", "agent", "warm-cache", "--config", str(plan.config_path)],
            what=f"warm feature cache of {plan.device_class} ({plan.encoder})",
        )


def start_agents(plans: list[AgentPlan]) -> list[subprocess.Popen[bytes]]:
    procs = []
    for plan in plans:
        log = (plan.config_path.parent / "agent.log").open("wb")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "agent", "run", "--config", str(plan.config_path)],
                stdout=log,
                stderr=log,
                cwd=REPO,
            )
        )
        log.close()
    _log(f"started {len(plans)} agents: {', '.join(p.device_id for p in plans)}")
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


# -- the run --------------------------------------------------------------------------------------
def _admin_options(broker: dict[str, Any]) -> Any:
    from builder.fleet.session import BrokerOptions, read_password

    secure = broker["secure"]
    return BrokerOptions(
        url=broker["url"],
        username=ADMIN if secure else None,
        password=read_password(password_file=Path(broker["password_files"][ADMIN]))
        if secure
        else None,
        protocol5=secure,
    )


def _watch(options: Any, plans: list[AgentPlan], digest: str, timeout_s: float) -> dict[str, Any]:
    """Wait until every agent's result for this payload is in; returns them by device id."""
    from builder.fleet.session import BrokerSession

    ids = {p.device_id for p in plans}
    deadline = time.monotonic() + timeout_s
    with BrokerSession(options) as session:
        session.collect_retained("plada/device/#", quiet_s=0.2)
        while time.monotonic() < deadline:
            results = {}
            for topic, body in session.snapshot().items():
                parts = topic.split("/")
                if len(parts) == 5 and parts[3] == "result" and parts[2] in ids and body:
                    result = json.loads(body)
                    if result.get("payload_id") == digest:
                        results[parts[2]] = result
            if results.keys() == ids:
                return results
            time.sleep(0.2)
    raise SystemExit(f"demo: not every agent reported within {timeout_s:.0f} s (see agent.log)")


def _wait_online(options: Any, plans: list[AgentPlan], procs: list[Any], timeout_s: float) -> None:
    from builder.fleet.session import BrokerSession

    ids = {p.device_id for p in plans}
    deadline = time.monotonic() + timeout_s
    with BrokerSession(options) as session:
        session.collect_retained("plada/device/+/availability", quiet_s=0.1)
        while time.monotonic() < deadline:
            online = {t.split("/")[2] for t, b in session.snapshot().items() if b == b"online"}
            if ids <= online:
                return
            dead = [p for p, proc in zip(plans, procs, strict=True) if proc.poll() is not None]
            if dead:
                raise SystemExit(f"demo: agent {dead[0].device_id} exited; see its agent.log")
            time.sleep(0.2)
    raise SystemExit("demo: agents did not come online")


def print_table(
    plans: list[AgentPlan],
    results: dict[str, Any],
    report: dict[str, Any],
    *,
    payload_bytes: int,
    published_at: float,
) -> str:
    devices = report.get("devices", {})
    lines = [
        f"task {report['task']} v{report.get('version')}: payload {payload_bytes} bytes "
        f"({report['num_indices']} (index, label) pairs, strategy {report['strategy']})",
        f"teacher ({report['teacher']['encoder']}) accuracy on the test split: "
        f"{100 * report['teacher_accuracy']:.1f} %",
        "",
    ]
    header = (
        "device",
        "class",
        "encoder",
        "accuracy",
        "simulated",
        "device-oracle",
        "publish->ready",
        "first byte->model",
        "bytes rx",
    )
    rows: list[tuple[str, ...]] = [header]
    for plan in plans:
        r = results[plan.device_id]
        sim = devices.get(plan.encoder, {})
        acc = r.get("probe_accuracy")
        rows.append(
            (
                plan.device_id,
                plan.device_class,
                plan.encoder,
                "-" if acc is None else f"{100 * acc:.1f} %",
                "-" if "accuracy" not in sim else f"{100 * sim['accuracy']:.1f} %",
                "-" if "oracle_accuracy" not in sim else f"{100 * sim['oracle_accuracy']:.1f} %",
                f"{r['finished_at'] - published_at:.2f} s",
                "-" if r.get("time_to_model_s") is None else f"{r['time_to_model_s']:.2f} s",
                str(r["bytes_received"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(
        "accuracy: the agent's own model on the target's test split (its probe set); simulated: "
        "the builder's prediction for that device class; device-oracle: that encoder with a head "
        "trained on the whole labelled train split."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=Path("data"), help="`make data` folder")
    parser.add_argument("--out", type=Path, default=Path("build/demo"), help="output folder")
    parser.add_argument("--task", default="fashion", help="target under DATA/targets")
    parser.add_argument("--budget", default="2KiB", help="payload budget")
    parser.add_argument(
        "--agents", default=DEFAULT_AGENTS, help="CLASS:COUNT,... (firmware_configs)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for agents")
    parser.add_argument(
        "--warm",
        choices=["auto", "always", "never"],
        default="auto",
        help="embed each device class's whole corpus before publishing (auto: only when the "
        f"corpus has at most {WARM_AUTO_MAX_IMAGES} images, to keep a fresh run short)",
    )
    parser.add_argument("--serve-amqtt", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_amqtt is not None:
        return serve_amqtt(args.serve_amqtt)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.data / "ref-v1").exists():
        raise SystemExit(f"demo: {args.data}/ref-v1 is missing; run `make data` first")

    from builder.fleet.publish import publish_payload
    from plada.payload import payload_digest
    from plada.signing import generate_keypair

    key_dir = args.out / "keys"
    if not (key_dir / "private.pem").exists():
        generate_keypair(key_dir)
    plans = plan_agents(args.agents, args.out)
    specs = list(dict.fromkeys(p.encoder for p in plans))
    if len(specs) < 2:
        _log("note: all agents run one encoder; give --agents two classes to show heterogeneity")
    ensure_encoders(specs, args.out / "encoders", args.data / "ref-v1")
    payload_path, report = ensure_task(args, specs, key_dir / "private.pem")
    broker = start_broker(args.out / "broker", [p.device_id for p in plans])
    write_agent_configs(plans, args, broker, key_dir / "public.pem")
    from plada.corpus import Corpus

    warm_caches(plans, mode=args.warm, corpus_size=len(Corpus.open(args.data / "ref-v1")))
    procs = start_agents(plans)
    options = _admin_options(broker)
    try:
        _wait_online(options, plans, procs, timeout_s=60)
        data = payload_path.read_bytes()
        published_at = time.time()
        pub = publish_payload(data, options=options, group=GROUP)
        _log(
            f"published {len(data)} bytes once, retained, to group {GROUP} ({pub.messages} message)"
        )
        results = _watch(options, plans, payload_digest(data), args.timeout)
    finally:
        stop_agents(procs)
    table = print_table(plans, results, report, payload_bytes=len(data), published_at=published_at)
    (args.out / "demo-table.txt").write_text(table + "\n", encoding="utf-8")
    (args.out / "demo-results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print()
    print(table)
    print()
    auth = ""
    if broker["secure"]:
        auth = f" --username {ADMIN} --password-file {broker['password_files'][ADMIN]}"
    else:
        auth = " --mqtt3"
    first = plans[0].config_path
    print(
        f"demo finished in {time.monotonic() - started:.0f} s. The broker keeps running "
        f"(pid {broker['pid']}) so you can ask the fleet:"
    )
    print(f"  .venv/bin/plada-build fleet status --broker {broker['url']}{auth}")
    print(f"  .venv/bin/plada-build fleet results {report['task']} --broker {broker['url']}{auth}")
    print(f"  .venv/bin/plada-agent trial-report --config {first}")
    print(f"stop it with: kill {broker['pid']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
