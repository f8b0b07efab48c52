"""Link-emulation test helpers: a trial network with mosquitto in its broker namespace, and real
MQTT clients (tools.trial.mqtt_client) run inside the namespaces with ``ip netns exec``.

The tests need root (CI runs as root). Outside CI, without root or the tools, they skip with the
reason; in CI (CI=true) a missing requirement is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tools.trial.broker import NamespaceBroker
from tools.trial.network import DeviceSpec, TrialNetwork

REPO = Path(__file__).resolve().parents[2]
_TOOLS = ("ip", "tc", "nft", "mosquitto", "ping", "sysctl")


def require_link_emulation() -> None:
    """Skip outside CI (with the reason) when root or a tool is missing; fail in CI."""
    problem = None
    if os.geteuid() != 0:
        problem = "link emulation needs root (network namespaces, tc, nft)"
    else:
        path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
        missing = [tool for tool in _TOOLS if shutil.which(tool, path=path) is None]
        if missing:
            problem = f"missing {', '.join(missing)} (apt-get install nftables mosquitto ...)"
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{problem}: CI runs as root with these installed (.ci/run); never skip there")
    pytest.skip(problem)


@contextmanager
def trial(
    devices: list[DeviceSpec], folder: Path, *, verbose_broker: bool = False
) -> Iterator[tuple[TrialNetwork, NamespaceBroker]]:
    """A trial network with mosquitto running in its broker namespace; torn down on exit."""
    require_link_emulation()
    with TrialNetwork(devices, guardian_log=folder / "guardian.log") as net:
        broker = NamespaceBroker(net, folder / "broker", verbose=verbose_broker)
        with broker:
            yield net, broker


def client_argv(net: TrialNetwork, where: str, *args: str) -> list[str]:
    return net.argv(where, [sys.executable, "-m", "tools.trial.mqtt_client", *args])


def publish(
    net: TrialNetwork, where: str, url: str, topic: str, *, size: int, count: int
) -> dict[str, Any]:
    """Publish ``count`` QoS 1 messages of ``size`` random bytes from a namespace; its summary."""
    args = ["--url", url, "--topic", topic, "--size", str(size), "--count", str(count)]
    done = subprocess.run(
        client_argv(net, where, "publish", *args),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.stdout.strip(), f"mqtt client printed nothing: {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


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
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if json.loads(first or "{}") != {"subscribed": True}:
            self.kill()
            raise AssertionError(f"subscriber did not subscribe: {first!r}")

    def result(self, *, timeout_s: float = 60) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=timeout_s)
        assert out.strip(), f"subscriber printed nothing: {err[-2000:]}"
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return result

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)  # reaps it and closes its pipes
