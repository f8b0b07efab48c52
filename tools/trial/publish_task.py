"""Publish a task payload the product's way (builder.fleet.publish) from inside a namespace, and
print when it was sent, so a trial's time to ready starts at the publish, not at this process's
imports.

    ip netns exec <broker ns> python -m tools.trial.publish_task task.plada \\
        --url mqtt://127.0.0.1:1883 --group trial

prints one JSON line: ``sent_at`` (wall clock just before connecting), ``acked_at``,
``messages``, ``topics`` (of every group; ``--group`` repeats, one publish per group).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from builder.fleet.publish import publish_payload
from builder.fleet.session import BrokerOptions
from plada.chunks import DEFAULT_MAX_CHUNK_BYTES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("payload", type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--group", required=True, action="append")
    parser.add_argument("--max-chunk-bytes", type=int, default=DEFAULT_MAX_CHUNK_BYTES)
    args = parser.parse_args(argv)
    data = args.payload.read_bytes()
    options = BrokerOptions(url=args.url, protocol5=True, timeout_s=30)
    sent_at = time.time()
    reports = [
        publish_payload(data, options=options, group=group, max_chunk_bytes=args.max_chunk_bytes)
        for group in args.group
    ]
    acked_at = time.time()
    messages = reports[0].messages  # per group: what each device is sent
    topics = [topic for report in reports for topic in report.topics]
    summary = {"sent_at": sent_at, "acked_at": acked_at, "messages": messages}
    print(json.dumps({**summary, "topics": topics}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
