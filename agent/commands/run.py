"""`plada-agent run`: the device daemon (what plada-agent.service starts).

    plada-agent run --config /etc/plada/agent.toml

Connects to the broker, follows the group's task topic, trains each new task on-device and reports
status, results and availability. SIGTERM or SIGINT stop it cleanly. Under systemd it sends
READY / WATCHDOG / STOPPING (Type=notify).
A damaged or missing corpus or encoder is not a reason to exit: the daemon starts, keeps serving
the models it has, reports the problem in its status and installs tasks once it is fixed.
Exit codes: 0 stopped cleanly; 78 bad config (not restarted: RestartPreventExitStatus=78);
69, 74 the state folder cannot be used (unwritable, full, damaged beyond rebuilding); 1 unexpected
failure (systemd restarts it).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from agent.commands._common import DEFAULT_CONFIG


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "run",
        help="run the device daemon: receive tasks over MQTT, train, report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"agent TOML (default {DEFAULT_CONFIG})"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.set_defaults(func=handler)


def _setup_logging(level: str) -> None:
    # Under journald (JOURNAL_STREAM set) timestamps come from the journal.
    fmt = "%(levelname)s %(name)s: %(message)s"
    if not os.environ.get("JOURNAL_STREAM"):
        fmt = "%(asctime)s " + fmt
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def handler(args: argparse.Namespace) -> int:
    from agent.commands.check_config import data_problems, validate

    _setup_logging(args.log_level)
    log = logging.getLogger("agent.run")
    config, problems = validate(args.config)
    if config is None or problems:
        for problem in problems:
            print(f"config error: {problem}", file=sys.stderr)
        return os.EX_CONFIG
    for problem in data_problems(config):
        log.warning("device data: %s (tasks wait until it is fixed)", problem)

    from agent.app import AgentApp, PipelineApplier, subscription_record
    from agent.commands._common import report_error
    from agent.errors import AgentError
    from agent.link import MqttLink
    from plada.errors import PladaError

    stop = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        link = MqttLink(config.mqtt, device_id=config.device_id, record=subscription_record(config))
        app = AgentApp(config, link=link, applier=PipelineApplier(config), stop=stop)
    except (AgentError, PladaError, OSError) as exc:  # e.g. state.dir not writable
        return report_error(exc)
    log.info(
        "agent %s (%s) following group %s on %s",
        config.device_id,
        config.device_class,
        config.mqtt.group,
        config.mqtt.url,
    )
    return app.run()
