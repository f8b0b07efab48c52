"""Drive the MQTT client (tools.trial.mqtt_client) and ping inside a trial's namespaces.

``publish`` runs a publisher to completion; ``Subscriber`` runs one in the background and returns
once the broker granted its subscription; ``Pinger`` records every reply with its time (``ping -D``)
so round trips under load and the length of an outage can be read off it.
"""

from __future__ import annotations

import itertools
import json
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.trial.errors import TrialStateError
from tools.trial.network import TrialNetwork

REPO = Path(__file__).resolve().parents[2]
_REPLY = re.compile(r"^\[(\d+\.\d+)\] .* icmp_seq=(\d+) .*time=([\d.]+) ms")


def client_argv(net: TrialNetwork, where: str, *args: str) -> list[str]:
    return net.argv(where, [sys.executable, "-m", "tools.trial.mqtt_client", *args])


def _summary(out: str, err: str) -> dict[str, Any]:
    lines = out.strip().splitlines()
    if not lines:
        raise TrialStateError(f"mqtt client printed nothing: {err[-2000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def publish(
    net: TrialNetwork,
    where: str,
    url: str,
    topic: str,
    *,
    size: int | None = None,
    count: int = 1,
    timeout_s: float = 120,
    payload_file: Path | None = None,
) -> dict[str, Any]:
    """Publish ``count`` QoS 1 messages of ``size`` random bytes (or of ``payload_file``'s bytes)
    from a namespace; its summary."""
    body = ["--file", str(payload_file)] if payload_file is not None else ["--size", str(size)]
    args = ["--url", url, "--topic", topic, *body, "--count", str(count)]
    args += ["--timeout", str(timeout_s)]
    done = subprocess.run(
        client_argv(net, where, "publish", *args),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=timeout_s + 30,
        check=False,
    )
    return _summary(done.stdout, done.stderr)


class Subscriber:
    """A subscriber running in the background in a namespace; ``result()`` waits for its summary."""

    def __init__(
        self,
        net: TrialNetwork,
        where: str,
        url: str,
        topic: str,
        *,
        count: int,
        timeout_s: float = 30,
        persistent_as: str | None = None,
        keepalive_s: int = 60,
    ) -> None:
        args = ["--url", url, "--topic", topic, "--count", str(count)]
        args += ["--timeout", str(timeout_s), "--keepalive", str(keepalive_s)]
        if persistent_as is not None:
            args += ["--persistent", "--client-id", persistent_as]
        self.proc = subprocess.Popen(
            client_argv(net, where, "subscribe", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self.proc.stdout is not None  # noqa: S101 (PIPE above)
        first = self.proc.stdout.readline()
        if json.loads(first or "{}") != {"subscribed": True}:
            self.kill()
            raise TrialStateError(f"subscriber did not subscribe: {first!r}")

    def result(self, *, timeout_s: float = 120) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout_s)
        return _summary(out, err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)  # reaps it and closes its pipes


class Pinger:
    """``ping -D`` in a namespace until stopped; the replies as (time, seq, rtt ms)."""

    def __init__(self, net: TrialNetwork, where: str, target: str, *, interval_s: float) -> None:
        argv = ["ping", "-D", "-n", "-i", f"{interval_s:g}", "-W", "10", target]
        self.proc = subprocess.Popen(
            net.argv(where, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def stop(self) -> list[tuple[float, int, float]]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=15)
        replies = []
        for line in out.splitlines():
            match = _REPLY.match(line)
            if match:
                replies.append((float(match[1]), int(match[2]), float(match[3])))
        return replies


def rtt_stats(replies: list[tuple[float, int, float]]) -> dict[str, float | int] | None:
    if not replies:
        return None
    rtts = [rtt for *_, rtt in replies]
    return {
        "replies": len(rtts),
        "min_ms": round(min(rtts), 3),
        "median_ms": round(statistics.median(rtts), 3),
        "max_ms": round(max(rtts), 3),
    }


def longest_silence_s(replies: list[tuple[float, int, float]]) -> float:
    """The longest time between two consecutive replies (an outage, as ping saw it)."""
    times = sorted(t for t, *_ in replies)
    return round(max((b - a for a, b in itertools.pairwise(times)), default=0.0), 3)
