"""Publish a task payload the product's way (builder.fleet.publish) from inside a namespace, and
print when it was sent, so a trial's time to ready starts at the publish, not at this process's
imports.

    ip netns exec <broker ns> python -m tools.trial.publish_task task.plada \\
        --url mqtt://127.0.0.1:1883 --group trial

prints one JSON line: ``sent_at`` (wall clock just before connecting), ``acked_at``,
``messages``, ``topics``.
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
    parser.add_argument("--group", required=True)
    parser.add_argument("--max-chunk-bytes", type=int, default=DEFAULT_MAX_CHUNK_BYTES)
    args = parser.parse_args(argv)
    data = args.payload.read_bytes()
    options = BrokerOptions(url=args.url, protocol5=True, timeout_s=30)
    sent_at = time.time()
    report = publish_payload(
        data, options=options, group=args.group, max_chunk_bytes=args.max_chunk_bytes
    )
    acked_at = time.time()
    summary = {"sent_at": sent_at, "acked_at": acked_at, "messages": report.messages}
    print(json.dumps({**summary, "topics": report.topics}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
