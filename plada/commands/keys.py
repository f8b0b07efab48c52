"""`plada keys ...` (not implemented yet)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "keys", help="keys commands (not implemented yet)"
    )
    parser.set_defaults(func=lambda args: 2)
