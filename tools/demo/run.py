"""`make demo`: builder -> broker -> agents of two device classes -> one publish -> a table.

    python -m tools.demo --data data --out build/demo

1. a signing key, the device encoders (`plada-build export-encoder`), and a task for the `fashion`
   target at a 2 KiB budget (`plada-build task --auto`, simulated for every device class);
2. the development broker on a free local port (tools/devbroker.py: mosquitto with passwords and
   the shipped ACL when installed, otherwise an embedded amqtt broker), left running afterwards so
   that `plada-build fleet status` works; the next demo run replaces it;
3. agents as separate `plada-agent run` processes with their own state folders, configured from
   firmware_configs/<class>.toml, each class's feature cache warmed once (`plada-agent warm-cache`);
4. one retained publish; wait until every agent reports its result; print the table.

Everything expensive (encoders, payload, embedding and feature caches) is reused on a second run;
agent state folders are fresh each run so every agent really trains again.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from builder.fleet.publish import publish_payload
from plada.atomic import write_text_atomic
from plada.corpus import Corpus
from plada.payload import payload_digest
from plada.signing import generate_keypair
from tools.demo import agents
from tools.demo.steps import ensure_encoders, ensure_task, log, write_json
from tools.demo.table import print_table
from tools.demo.watch import admin_options, wait_online, watch_results
from tools.devbroker import ADMIN_USER, Broker, start_broker, stop_previous

DEFAULT_AGENTS = "raspberry-pi-4:2,x86-dev:1"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
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
        f"corpus has at most {agents.WARM_AUTO_MAX_IMAGES} images, to keep a fresh run short)",
    )
    return parser.parse_args(argv)


def _start_broker(folder: Path, device_ids: list[str]) -> Broker:
    """A fresh detached broker in `folder`, replacing the one an earlier run left running."""
    folder = folder.resolve()  # agent configs need absolute paths
    old = stop_previous(folder)
    if old is not None:
        log(f"stopped the previous demo broker (pid {old})")
    shutil.rmtree(folder, ignore_errors=True)
    broker = start_broker(folder, users=device_ids, tls=False, detached=True)
    info = {"url": broker.url, "kind": broker.kind, "secure": broker.secure, "pid": broker.pid}
    write_json(folder / "broker.json", info)
    kind = broker.kind if broker.secure else "amqtt (embedded; mosquitto not installed)"
    log(f"broker: {kind} on {broker.url} (pid {broker.pid})")
    return broker


def _epilogue(broker: Broker, task: str, first_config: Path, seconds: float) -> None:
    auth = " --mqtt3"
    if broker.secure:
        admin_password = broker.password_file(ADMIN_USER)
        auth = f" --username {ADMIN_USER} --password-file {admin_password}"
    print(
        f"demo finished in {seconds:.0f} s. The broker keeps running "
        f"(pid {broker.pid}) so you can ask the fleet:"
    )
    print(f"  .venv/bin/plada-build fleet status --broker {broker.url}{auth}")
    print(f"  .venv/bin/plada-build fleet results {task} --broker {broker.url}{auth}")
    print(f"  .venv/bin/plada-agent trial-report --config {first_config}")
    print(f"stop it with: kill {broker.pid}")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.data / "ref-v1").exists():
        raise SystemExit(f"demo: {args.data}/ref-v1 is missing; run `make data` first")
    key_dir = args.out / "keys"
    if not (key_dir / "private.pem").exists():
        generate_keypair(key_dir)
    plans = agents.plan_agents(args.agents, args.out)
    specs = list(dict.fromkeys(p.encoder for p in plans))
    if len(specs) < 2:
        log("note: all agents run one encoder; give --agents two classes to show heterogeneity")
    ensure_encoders(specs, args.out / "encoders", args.data / "ref-v1")
    payload_path, report = ensure_task(args, specs, key_dir / "private.pem")
    broker = _start_broker(args.out / "broker", [p.device_id for p in plans])
    agents.write_agent_configs(plans, args, broker, key_dir / "public.pem")
    corpus_size = len(Corpus.open(args.data / "ref-v1"))
    agents.warm_caches(plans, mode=args.warm, corpus_size=corpus_size)
    procs = agents.start_agents(plans)
    options = admin_options(broker)
    try:
        wait_online(options, plans, procs, timeout_s=60)
        data = payload_path.read_bytes()
        published_at = time.time()
        pub = publish_payload(data, options=options, group=agents.GROUP)
        log(f"published {len(data)} bytes once, retained, to group {agents.GROUP} "
            f"({pub.messages} message)")  # fmt: skip
        results = watch_results(options, plans, payload_digest(data), args.timeout)
    finally:
        agents.stop_agents(procs)
    rows = {device: r.to_json() for device, r in results.items()}
    table = print_table(
        plans, rows, report.to_json(), payload_bytes=len(data), published_at=published_at
    )
    write_text_atomic(args.out / "demo-table.txt", table + "\n")
    write_json(args.out / "demo-results.json", rows)
    print(f"\n{table}\n")
    _epilogue(broker, report.task or args.task, plans[0].config_path, time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
