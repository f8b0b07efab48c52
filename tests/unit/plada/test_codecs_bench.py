"""bench/codec.py helpers: the bound, the synthetic cases, the README table."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from bench.codec import (
    README_END,
    README_START,
    bound_bytes,
    clustered_case,
    render_table,
    run_case,
    update_readme,
)


def test_bound_bytes_is_log2_binomial_plus_label_entropy() -> None:
    labels = np.array([0, 1, 0, 1], dtype=np.int64)  # H = 1 bit
    expected = (math.log2(math.comb(16, 4)) + 4) / 8
    assert math.isclose(bound_bytes(16, labels, 2), expected)


def test_clustered_case_is_valid_and_clustered() -> None:
    indices, labels = clustered_case(2_000_000, 20_000, 10, seed=1)
    assert len(indices) == 20_000 == len(np.unique(indices))
    assert int(labels.max()) < 10
    assert float(np.median(np.diff(indices))) < 10  # uniform would be ~100


def test_run_case_round_trips_and_update_readme_replaces_table(tmp_path: Path) -> None:
    # Prepare
    rng = np.random.default_rng(0)
    indices = np.sort(rng.choice(10_000, size=100, replace=False)).astype(np.int64)
    labels = rng.integers(0, 3, size=100).astype(np.int64)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\noutro\n", encoding="utf-8")
    # Execute
    row = run_case("t", 10_000, 3, indices, labels, repeats=1)
    changed = update_readme(readme, render_table([row]))
    # Assert
    text = readme.read_text(encoding="utf-8")
    assert changed
    assert row["best_bytes"] <= row["paper_bytes"]
    assert "old" not in text and "| t | 10,000 | 100 | 3 |" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
