"""Number formats and Markdown pieces every section of the results uses."""

from __future__ import annotations

import math
from collections.abc import Sequence

from bench.schema import SectionError
from bench.schema.common import Stat, Value
from builder.pipeline.budget import parse_budget


def pct(x: float | None) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{100 * float(x):.1f}"


def mean_of(stat: Value) -> float | None:
    if isinstance(stat, Stat):
        return None if stat.mean is None else float(stat.mean)
    return None if stat is None else float(stat)


def pm(stat: Value) -> str:
    """`81.3 ± 0.4` from a Stat (fractions), `81.3` for one seed or a plain value."""
    if not isinstance(stat, Stat):
        return pct(stat) if stat is not None else "n/a"
    if stat.mean is None:
        return "n/a"
    if stat.n > 1:
        return f"{pct(stat.mean)} ± {100 * float(stat.sd or 0.0):.1f}"
    return pct(stat.mean)


def num(x: Value, digits: int = 0) -> str:
    value = mean_of(x)
    return "n/a" if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def budget_bytes(budget: str) -> int:
    """Bytes of a byte budget as the builder parses it (`2KiB`, `8kB`); 0 for other budgets."""
    parsed = parse_budget(budget)
    return int(parsed.value) if parsed.kind == "bytes" else 0


def error_line(name: str, section: SectionError | None) -> list[str]:
    if section is None:
        return [f"_{name}: not run in this configuration._", ""]
    return [f"_{name} failed: `{section.error}`_", ""]


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]
