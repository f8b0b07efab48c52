"""`plada-agent check-config`: validate the agent config and the files it names, then exit.

    plada-agent check-config --config /etc/plada/agent.toml [--json]

Checks the TOML (unknown or missing keys are named), the trusted public keys, the broker URL, TLS
files and that the broker password can be read (it is never printed); then the device data the
config names: that the corpus opens (header, manifest and index hashes, shard sizes; `plada corpus
verify` checks every image) and the encoder file matches its JSON sidecar.
Exit codes: 0 valid; 78 (EX_CONFIG) the config is invalid; 74 (EX_IOERR) the config is valid but
the corpus or encoder it names is missing or damaged (the daemon still starts, reports it in its
status and installs tasks once it is fixed).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.commands._common import DEFAULT_CONFIG

if TYPE_CHECKING:
    from agent.config import AgentConfig


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "check-config",
        help="validate the agent config and the files it names (exit 78 if invalid)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help=f"agent TOML (default {DEFAULT_CONFIG})"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=handler)


def validate(path: Path) -> tuple[AgentConfig | None, list[str]]:
    """Parse the config and check the files it needs to run; returns (config or None, problems)."""
    from agent.config import load_config
    from agent.errors import ConfigError
    from plada.errors import KeyFileError
    from plada.signing import load_trusted_keys

    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, [str(exc)]
    problems: list[str] = []
    try:
        load_trusted_keys(config.trust.public_keys)
    except KeyFileError as exc:
        problems.append(f"trust.public_keys: {exc}")
    try:
        config.mqtt.check_files()
        config.mqtt.resolve_password()
    except ConfigError as exc:
        problems.append(str(exc))
    return config, problems


def data_problems(config: AgentConfig) -> list[str]:
    """What is wrong with the device data the config names (corpus, encoder): device faults."""
    from agent.errors import EncoderBackendError
    from agent.features import EncoderInfo
    from plada.corpus import Corpus
    from plada.errors import CorpusError

    problems: list[str] = []
    try:
        with Corpus.open(config.corpus.path):
            pass
    except CorpusError as exc:
        problems.append(f"corpus.path: {exc}")
    try:
        EncoderInfo.load(config.encoder.file)
    except EncoderBackendError as exc:
        problems.append(f"encoder.file: {exc}")
    return problems


def handler(args: argparse.Namespace) -> int:
    config, problems = validate(args.config)
    data = data_problems(config) if config is not None and not problems else []
    ok = config is not None and not problems and not data
    if args.json:
        out: dict[str, Any] = {
            "config": str(args.config),
            "valid": ok,
            "problems": problems + data,
        }
        if config is not None:
            out |= {
                "device_id": config.device_id,
                "device_class": config.device_class,
                "broker": config.mqtt.broker,
                "group": config.mqtt.group,
            }
        print(json.dumps(out, indent=2))
    elif ok and config is not None:
        print(
            f"{args.config}: valid (device {config.device_id}, class {config.device_class}, "
            f"group {config.mqtt.group} on {config.mqtt.broker})"
        )
    else:
        print(
            f"{args.config}: invalid"
            if problems or config is None
            else f"{args.config}: config valid, device data damaged"
        )
        for problem in problems + data:
            print(f"  {problem}")
    if config is None or problems:
        return os.EX_CONFIG
    return os.EX_IOERR if data else 0
