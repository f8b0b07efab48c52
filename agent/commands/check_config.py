"""`plada-agent check-config`: validate the agent config and the files it names, then exit.

    plada-agent check-config --config /etc/plada/agent.toml [--json]

Checks the TOML (unknown or missing keys are named), the corpus folder, the encoder file and its
JSON sidecar, the trusted public keys, the broker URL, TLS files and that the broker password can
be read (it is never printed). Exit codes: 0 valid; 78 (EX_CONFIG) invalid.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.config import AgentConfig

DEFAULT_CONFIG = Path("/etc/plada/agent.toml")


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
    """Parse the config and check what it points at; returns (config or None, problems)."""
    from agent.config import load_config
    from agent.errors import ConfigError
    from plada.errors import KeyFileError
    from plada.signing import load_trusted_keys

    try:
        config = load_config(path)
    except ConfigError as exc:
        return None, [str(exc)]
    problems: list[str] = []
    if not config.corpus.path.is_dir():
        problems.append(f"corpus.path: folder {config.corpus.path} does not exist")
    encoder = config.encoder.file
    if not encoder.is_file():
        problems.append(f"encoder.file: {encoder} does not exist")
    elif not encoder.with_suffix(".json").is_file():
        problems.append(f"encoder.file: sidecar {encoder.with_suffix('.json')} is missing")
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


def handler(args: argparse.Namespace) -> int:
    config, problems = validate(args.config)
    ok = config is not None and not problems
    if args.json:
        out: dict[str, Any] = {"config": str(args.config), "valid": ok, "problems": problems}
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
        print(f"{args.config}: invalid")
        for problem in problems:
            print(f"  {problem}")
    return 0 if ok else os.EX_CONFIG
