"""Link-emulation test helpers: a trial network with mosquitto in its broker namespace, and real
MQTT clients (tools.trial.mqtt_client) run inside the namespaces with ``ip netns exec``.

The tests need root (CI runs as root). Outside CI, without root or the tools, they skip with the
reason; in CI (CI=true) a missing requirement is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tools.trial.broker import NamespaceBroker
from tools.trial.clients import REPO, Subscriber, publish
from tools.trial.network import DeviceSpec, TrialNetwork

__all__ = ["REPO", "Subscriber", "publish", "require_link_emulation", "trial"]

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
