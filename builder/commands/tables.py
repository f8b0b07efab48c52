"""Text tables for the CLIs (rich), rendered to a string so they can be printed or saved."""

from __future__ import annotations

import io
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table

_WIDTH = 200  # wide enough for every table here: a narrow terminal wraps, a pipe does not


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns under a rule, no borders, no colour: readable in a terminal, a log or a file."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    console = Console(file=io.StringIO(), width=_WIDTH, color_system=None, force_terminal=False)
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in text.splitlines())
