"""Budgets: a keep ratio (`1%`, `0.01`), a count (`834`), or bytes (`2KiB`, `8kB`, `1500B`).

A byte budget is a cap on the whole signed payload: the builder searches the largest keep count
whose payload fits (sizing.py). Every place that reads a budget string parses it here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from builder.errors import BudgetError

_UNITS = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "k": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "m": 1024**2,
}
_BYTES_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    kind: Literal["ratio", "count", "bytes"]
    value: float

    def __str__(self) -> str:
        if self.kind == "bytes":
            return f"{int(self.value)}B"
        if self.kind == "ratio":
            return f"{self.value * 100:g}%"
        return str(int(self.value))

    def keep_for(self, corpus_size: int) -> int:
        """Keep count for ratio and count budgets."""
        if self.kind == "ratio":
            return max(1, round(self.value * corpus_size))
        if self.kind == "count":
            return min(int(self.value), corpus_size)
        raise BudgetError("a byte budget has no fixed keep count; search it with fit_to_bytes")


def parse_budget(text: str) -> Budget:
    """`2KiB`/`8kB`/`1500B` -> bytes, `1%`/`0.01` -> keep ratio, `834` -> keep count."""
    t = text.strip()
    try:
        if t.endswith("%"):
            ratio = float(t[:-1]) / 100.0
            if not 0.0 < ratio <= 1.0:
                raise BudgetError(f"budget {text!r}: a percentage must be in (0, 100]")
            return Budget("ratio", ratio)
        if re.fullmatch(r"[0-9]+", t):
            count = int(t)
            if count < 1:
                raise BudgetError(f"budget {text!r}: a keep count must be >= 1")
            return Budget("count", count)
        if re.fullmatch(r"[0-9]*\.[0-9]+", t):
            ratio = float(t)
            if not 0.0 < ratio <= 1.0:
                raise BudgetError(f"budget {text!r}: a keep ratio must be in (0, 1]")
            return Budget("ratio", ratio)
    except ValueError as exc:
        raise BudgetError(f"budget {text!r}: {exc}") from exc
    m = _BYTES_RE.match(t)
    if m is None or m.group(2).lower() not in _UNITS:
        raise BudgetError(
            f"budget {text!r} is not a size (2KiB, 8kB, 1500B), a ratio (1%, 0.01) or a count (834)"
        )
    size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if size < 1:
        raise BudgetError(f"budget {text!r} is under one byte")
    return Budget("bytes", float(int(size)))
