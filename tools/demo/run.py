"""`make demo`: builder -> broker -> agents of two device classes -> two tasks, one publish each
-> a table per task -> both answering on a device -> one task retired.

    python -m tools.demo --data data --out build/demo

1. a signing key, the device encoders (`plada-build export-encoder`), and two tasks, for the
   `fashion` and `digits` targets at a 2 KiB budget each (`plada-build task --auto`, simulated
   for every device class);
2. the development broker on a free local port (tools/devbroker.py: mosquitto with passwords and
   the shipped ACL when installed, otherwise an embedded amqtt broker), left running afterwards so
   that `plada-build fleet status` works; the next demo run replaces it;
3. agents as separate `plada-agent run` processes with their own state folders, configured from
   firmware_configs/<class>.toml, each class's feature cache warmed once (`plada-agent warm-cache`);
4. one retained publish per task (each on its own topics); wait until every agent reports both
   results; print a table per task; one device classifies a test image of each task with
   `plada-agent predict` (one encoder pass, every head);
5. retire the second task with a signed tombstone (`plada-build retire`); wait until every agent
   reports it retired; print `plada-build fleet status` (one row per device and task).

Everything expensive (encoders, payload, embedding and feature caches) is reused on a second run;
agent state folders are fresh each run so every agent really trains again.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from builder.commands.fleet import status_table
from builder.fleet.publish import publish_payload, retire_task
from builder.fleet.session import BrokerOptions
from builder.fleet.status import fleet_status
from plada.atomic import write_text_atomic
from plada.corpus import Corpus
from plada.payload import payload_digest
from plada.signing import generate_keypair, load_private_key, load_trusted_keys
from plada.tombstone import encode_tombstone, make_tombstone
from tools.demo import agents
from tools.demo.steps import REPO, ensure_encoders, ensure_task, log, write_json
from tools.demo.table import print_table
from tools.demo.watch import admin_options, wait_online, wait_retired, watch_results
from tools.devbroker import ADMIN_USER, Broker, start_broker, stop_previous

# Two classes with different encoders (Lite0 int8 at 64 px, Lite1 int8 at 96 px): the fleet is
# heterogeneous, and Lite1 int8 embeds the corpus 1.8x faster than x86-dev's float Lite1 (548 vs
# 300 img/s, README "Embedding pipeline"), which a cold demo does four times.
DEFAULT_AGENTS = "raspberry-pi-4:2,raspberry-pi-5:1"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tools.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, default=Path("data"), help="`make data` folder")
    parser.add_argument("--out", type=Path, default=Path("build/demo"), help="output folder")
    parser.add_argument("--task", default="fashion", help="target under DATA/targets")
    parser.add_argument(
        "--second-task",
        default="digits",
        help="a second target taught to the same fleet, then retired ('' for one task only)",
    )
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
    tasks = agents.demo_tasks(args)
    built = [ensure_task(args, specs, key_dir / "private.pem", task=t) for t in tasks]
    broker = _start_broker(args.out / "broker", [p.device_id for p in plans])
    agents.link_probe_dir(args)
    agents.write_agent_configs(plans, args, broker, key_dir / "public.pem")
    corpus_size = len(Corpus.open(args.data / "ref-v1"))
    agents.warm_caches(plans, mode=args.warm, corpus_size=corpus_size)
    procs = agents.start_agents(plans)
    options = admin_options(broker)
    tables: list[str] = []
    all_rows: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        wait_online(options, plans, procs, timeout_s=60)
        published = []
        for path, _ in built:
            data = path.read_bytes()
            published_at = time.time()
            pub = publish_payload(data, options=options, group=agents.GROUP)
            log(f"published task {pub.task} ({len(data)} bytes) once, retained, on its own "
                f"topics of group {agents.GROUP} ({pub.messages} message)")  # fmt: skip
            published.append((data, published_at))
        for (data, published_at), (_, report) in zip(published, built, strict=True):
            results = watch_results(options, plans, payload_digest(data), args.timeout)
            rows = {device: r.to_json() for device, r in results.items()}
            all_rows[report.task or "?"] = rows
            tables.append(
                print_table(
                    plans,
                    rows,
                    report.to_json(),
                    payload_bytes=len(data),
                    published_at=published_at,
                )
            )
        for table in tables:
            print(f"\n{table}\n")
        if len(tasks) > 1:
            answers = _predict_each(args, plans[0], tasks)
            print(answers + "\n")
            tables.append(answers)
            status = _retire(args, options, plans, tasks[-1], key_dir)
            print(f"{status}\n")
            tables.append(status)
    finally:
        agents.stop_agents(procs)
    write_text_atomic(args.out / "demo-table.txt", "\n\n".join(tables) + "\n")
    write_json(args.out / "demo-results.json", all_rows)
    _epilogue(broker, tasks[0], plans[0].config_path, time.monotonic() - started)
    return 0


def _predict_each(args: argparse.Namespace, plan: agents.AgentPlan, tasks: list[str]) -> str:
    """One test image of each task through `plada-agent predict` on one device: every head
    answers, over one encoder pass per image."""
    images = []
    for task in tasks:
        test = args.data / "targets" / task / "test"
        folder = sorted(p for p in test.iterdir() if p.is_dir())[0]
        images.append(sorted(f for f in folder.iterdir() if f.is_file())[0])
    cmd = [sys.executable, "-m", "agent", "predict", *map(str, images)]
    cmd += ["--config", str(plan.config_path), "--json", "--top", "1"]
    log(f"both tasks answer on {plan.device_id}: plada-agent predict {len(images)} images")
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"demo: plada-agent predict failed (exit {out.returncode}): {out.stderr}")
    lines = [f"{plan.device_id}: plada-agent predict (one encoder pass per image, every head)"]
    for row in json.loads(out.stdout):
        answers = ", ".join(
            f"{task} v{r['version']} -> {r['top'][0]['class']} ({r['top'][0]['prob']:.2f})"
            for task, r in sorted(row["tasks"].items())
        )
        true = Path(row["image"]).parent.name
        lines.append(f"  {Path(row['image']).parent.parent.parent.name}/{true}: {answers}")
    return "\n".join(lines)


def _retire(
    args: argparse.Namespace,
    options: BrokerOptions,
    plans: list[agents.AgentPlan],
    task: str,
    key_dir: Path,
) -> str:
    """Retire `task` with a signed tombstone; the fleet status once every agent reports it."""
    tombstone = encode_tombstone(
        make_tombstone(task, 1, note="demo"),
        signing_key=load_private_key(key_dir / "private.pem"),
    )
    report = retire_task(
        tombstone,
        options=options,
        group=agents.GROUP,
        trusted_keys=load_trusted_keys([key_dir / "public.pem"]),
    )
    log(f"retired task {task}: tombstone retained on {report.topic}, cleared "
        f"{len(report.cleared)} retained topic(s)")  # fmt: skip
    wait_retired(options, plans, task, timeout_s=60)
    return "plada-build fleet status (one row per device and task):\n" + status_table(
        fleet_status(options)
    )


if __name__ == "__main__":
    sys.exit(main())
