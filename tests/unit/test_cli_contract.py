"""What scripts rely on: every exit code a CLI uses is in the README's list, and error messages
are the same on every run (issue 14, item 18)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_CLIS = {
    "plada": "plada/commands",
    "plada-build": "builder/commands",
    "plada-agent": "agent/commands",
}
_USAGE = 2  # argparse exits 2 on bad flags, in every CLI


def _codes_used(folder: Path) -> set[int]:
    """Exit codes the command modules can return: EXIT_* constants, os.EX_* and int literals
    in return statements (both arms of a conditional)."""
    codes = {_USAGE}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and target.id.startswith("EXIT_")
        }
        codes |= {v for v in constants.values() if isinstance(v, int)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Return) or node.value is None:
                continue
            values = [node.value]
            if isinstance(node.value, ast.IfExp):
                values = [node.value.body, node.value.orelse]
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, int):
                    codes.add(value.value)
                elif isinstance(value, ast.Attribute) and value.attr.startswith("EX_"):
                    codes.add(getattr(os, value.attr))
    return codes


def _codes_documented() -> dict[str, set[int]]:
    """The README's exit-code table: one row per code, one column per CLI ('-' = unused)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = text[text.index("### Exit codes") :].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append(line)
    header = [cell.strip(" `") for cell in rows[0].strip("|").split("|")]
    documented: dict[str, set[int]] = {name: set() for name in header[1:]}
    for row in rows[2:]:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        for name, cell in zip(header[1:], cells[1:], strict=True):
            if cell != "-":
                documented[name].add(int(cells[0]))
    return documented


@pytest.mark.parametrize("cli", sorted(_CLIS))
def test_readme_lists_exactly_the_exit_codes_each_cli_uses(cli: str) -> None:
    # Execute
    used = _codes_used(ROOT / _CLIS[cli])
    documented = _codes_documented()[cli]
    # Assert
    assert used == documented


def test_error_messages_do_not_depend_on_the_hash_seed(tmp_path: Path) -> None:
    # Prepare: a target whose second class folder holds no image
    for split in ("train", "test"):
        (tmp_path / "t" / split / "a").mkdir(parents=True)
        (tmp_path / "t" / split / "b").mkdir(parents=True)
        (tmp_path / "t" / split / "a" / "x.png").write_bytes(b"")
    script = (
        "import sys\nfrom pathlib import Path\nfrom builder.pipeline.targets import load_target\n"
        "try:\n    load_target(Path(sys.argv[1]))\nexcept Exception as exc:\n    print(exc)\n"
    )
    # Execute
    messages = {
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "t")],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)},
        ).stdout
        for seed in ("1", "2", "3")
    }
    # Assert
    assert len(messages) == 1
    assert re.search(r"has no images \(\.bmp, \.gif, \.jpeg", messages.pop())
