"""Run a staged rollout the product's way (builder.fleet.rollout) from inside the broker namespace
(the trial's broker listens there only), and write its record.

    ip netns exec <broker ns> python -m tools.trial.rollout_task task-v3.plada \\
        --url mqtt://127.0.0.1:1883 --canary trial-canary --rest trial \\
        --signing-key keys/private.pem --trusted-key keys/public.pem \\
        --reference '{"x86-dev": 0.8}' --min-fraction 0.9 --timeout 300 --record rollout.json

``--reference`` is the accuracy per device class the threshold's ``min_fraction`` applies to
(run_rollout's ``simulated``). Prints one JSON line: ``outcome``, ``reason``, ``record``. Exits 0
whatever the outcome (an abort is a result here, not an error).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from builder.fleet.rollout import run_rollout
from builder.fleet.rollout_policy import Threshold
from builder.fleet.session import BrokerOptions
from plada.signing import load_private_key, load_trusted_keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payload", type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--canary", required=True)
    parser.add_argument("--rest", required=True)
    parser.add_argument("--signing-key", type=Path, required=True)
    parser.add_argument("--trusted-key", type=Path, required=True)
    parser.add_argument("--reference", default="{}", help="JSON: device class -> accuracy")
    parser.add_argument("--min-fraction", type=float)
    parser.add_argument("--min-accuracy", type=float)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args(argv)
    reference = {str(k): float(v) for k, v in json.loads(args.reference).items()}
    record = run_rollout(
        args.payload.read_bytes(),
        options=BrokerOptions(url=args.url, protocol5=True, timeout_s=30),
        canary=[args.canary],
        rest=[args.rest],
        signing_key=load_private_key(args.signing_key),
        threshold=Threshold(min_accuracy=args.min_accuracy, min_fraction=args.min_fraction),
        timeout_s=args.timeout,
        simulated=reference,
        trusted_keys=load_trusted_keys([args.trusted_key]),
    )
    record.save(args.record)
    summary = {"outcome": record.outcome, "reason": record.reason, "record": str(args.record)}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
