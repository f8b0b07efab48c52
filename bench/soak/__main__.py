"""`python -m bench.soak [--short] [--minutes M] [--agents N] [--out FILE] [--readme]`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from bench._common import ROOT, atomic_write_text, log, write_json
from bench.soak.config import FULL, SHORT
from bench.soak.readme import render, replace_section
from bench.soak.run import run_soak


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the few-minute version")
    parser.add_argument("--minutes", type=float, help="chaos duration (default: the preset's)")
    parser.add_argument("--agents", type=int, help="agent processes (default: the preset's)")
    parser.add_argument("--seed", type=int, help="chaos seed (default: the preset's)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--readme", action="store_true", help="update the README's soak table")
    parser.add_argument("--work", type=Path, help="keep devices, logs and broker here")
    args = parser.parse_args(argv)
    config = SHORT if args.short else FULL
    changes = {
        "duration_s": None if args.minutes is None else 60 * args.minutes,
        "agents": args.agents,
        "seed": args.seed,
    }
    config = dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
    with tempfile.TemporaryDirectory(prefix="plada-soak-") as tmp:
        result = run_soak(config, args.work or Path(tmp), log=log)
    if args.out is not None:
        write_json(args.out, result)
    if args.readme:
        readme = ROOT / "README.md"
        text = replace_section(readme.read_text(encoding="utf-8"), render(result))
        atomic_write_text(readme, text)
    print(json.dumps({k: result[k] for k in ("lost", "duplicated", "faults_injected")}))
    ok = not (result["lost"] or result["duplicated"] or result["inconsistent_stores"])
    return 0 if ok and not result["unreported"] and not result["agent_exits"] else 1


if __name__ == "__main__":
    sys.exit(main())
