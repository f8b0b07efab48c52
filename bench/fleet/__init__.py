"""Fleet fan-out at scale: one publish, N agents ready -> bench/results/fleet.json.

    .venv/bin/python -m bench.fleet --data data [--sizes 100,300,1000] [--workers 8]

A mosquitto of its own (tools.devbroker: passwords, the shipped ACL, persistence; raised
connection and file-descriptor limits), N real agent daemons in a few worker processes
(bench/fleet/worker.py says exactly which real code each one runs), and the builder's publish
path (builder.fleet.publish, chunked) sending signed payloads of 2 KiB and 8 KiB budgets made by
the builder's byte search (bench/fleet/payloads.py). Measured per fleet size and payload: time
from the publish call to every device ready (each device's own trial-log record), bytes and
messages per device, devices lost (not ready within the timeout), when the builder sees every
result, and the broker's and the workers' CPU and memory (from /proc).
"""

from bench.fleet.suite import main, run

__all__ = ["main", "run"]
