"""The results renderer reads budgets with the builder's parser and the machine from run.json."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bench.render import render_markdown
from bench.schema import BenchResults
from bench.schema.common import Stat
from bench.schema.comparisons import HeteroResults
from tests.unit.test_bench_smoke import _results


def _with_budget(results: dict[str, Any], budget: str) -> dict[str, Any]:
    out = copy.deepcopy(results)
    for task in out["accuracy"]["tasks"].values():
        task["summary"]["budgets"][0]["budget"] = budget
    for task in out["alternatives"]["tasks"].values():
        task["summary"]["budgets"][0]["budget"] = budget
    return out


@pytest.mark.parametrize("budget", ["8kB", "1500B", "2KiB"])
def test_render_reads_any_byte_budget_the_builder_accepts(budget: str) -> None:
    # Execute
    text = render_markdown(_with_budget(_results(), budget), {})
    # Assert
    assert f"fashion {budget}" in text


def test_render_takes_the_core_count_from_the_run_metadata() -> None:
    # Prepare
    results = _results()
    results["meta"]["machine"]["nproc"] = 16
    results["meta"]["invocations"] = 2
    # Execute
    text = render_markdown(results, {})
    # Assert
    assert "on 16 shared cores cannot take less than" in text
    assert "side by side on the 16 cores" in text
    assert "on 2 cores" not in text


def test_results_nest_each_metric_pair() -> None:
    # Execute
    typed = BenchResults.parse(_results())
    # Assert: clipart reads balanced accuracy, fashion plain accuracy, from the same records
    assert isinstance(typed.hetero, HeteroResults)
    row = typed.hetero.tasks["fashion"].summary[0]
    fashion, clipart = row.oracle.of("fashion"), row.oracle.of("clipart")
    assert isinstance(fashion, Stat) and isinstance(clipart, Stat)
    assert (fashion.mean, clipart.mean) == (0.8, 0.79)


def test_results_name_a_bad_key() -> None:
    results = _results()
    results["fleet"]["runs"][0]["agents"] = "many"
    with pytest.raises(ValueError, match="agents"):
        BenchResults.parse(results)


def test_render_shows_the_multitask_latency_per_task_count() -> None:
    # Prepare
    results = _results()
    rows = [
        {
            "tasks": k,
            "ms_per_image": 1.0 + 0.01 * k,
            "encoder_ms_per_image": 0.9,
            "heads_ms_per_image": 0.001 * k,
            "separate_passes_ms_per_image": 0.9 * k,
        }
        for k in (1, 2, 5)
    ]
    results["multitask"] = {
        "encoder": "lite0-64-int8",
        "feature_dim": 1280,
        "threads": 2,
        "batch_size": 32,
        "images": 256,
        "rows": rows,
        "extra_task_ms_per_image": 0.01,
        "extra_head_ms_per_image": 0.001,
        "extra_separate_ms_per_image": 0.9,
    }
    # Execute
    text = render_markdown(results, {})
    # Assert
    assert "### Several tasks per device" in text
    assert "| 5 | 1.05 | 0.90 | 0.005 | 4.50 |" in text
    assert "0.0010 ms per image" in text and "would add 0.90 ms" in text
