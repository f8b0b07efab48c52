"""What the broker tests add to the development broker (tools/devbroker.py): a skip outside CI."""

from __future__ import annotations

import pytest

from tools.devbroker import Broker


def require_secure(broker: Broker) -> None:
    """Skip outside CI when only amqtt is available; in CI mosquitto is mandatory."""
    if not broker.secure:
        pytest.skip("needs mosquitto (passwords, ACL, TLS); amqtt fallback in use")
