"""The report folder: JSON with the required keys, Markdown and PNG plots rendered from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from builder.errors import BuilderError
from builder.pipeline.report import energy_histogram
from builder.report.markdown import render_markdown
from builder.report.write import load_report, write_report


def _report() -> dict[str, Any]:
    energy = np.linspace(-5, 0, 100)
    return {
        "task": "demo",
        "class_names": ["a", "b"],
        "corpus": {"fingerprint": "ab" * 32, "size": 100},
        "budget": "2KiB",
        "teacher": {"encoder": "lite0-64", "balanced_accuracy": 0.9},
        "teacher_accuracy": 0.9,
        "device_accuracy": 0.8,
        "device_oracle_accuracy": 0.85,
        "devices": {
            "lite0-64-int8": {
                "accuracy": 0.8,
                "balanced_accuracy": 0.79,
                "oracle_accuracy": 0.85,
                "oracle_balanced_accuracy": 0.84,
            }
        },
        "strategy": "safety-net",
        "params": {"s": 0.5, "alpha": 0.5},
        "payload_bytes": 1900,
        "num_indices": 10,
        "leakage_flags": 1,
        "leakage": {"threshold": 0.99},
        "candidates": [
            {
                "strategy": "safety-net",
                "params": {"s": 0.5, "alpha": 0.5},
                "keep": 10,
                "payload_bytes": 1900,
                "val_accuracy": 0.7,
                "test_accuracy": 0.8,
                "chosen": True,
            },
            {
                "strategy": "random",
                "params": {"seed": 0},
                "keep": 10,
                "payload_bytes": 1950,
                "val_accuracy": 0.6,
                "test_accuracy": 0.7,
            },
        ],
        "kept_per_class": [6, 4],
        "energy_histogram": energy_histogram(energy, np.arange(10), bins=10),
    }


def test_write_report_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    # Execute
    paths = write_report(_report(), tmp_path / "r")
    # Assert
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "report.json",
            "report.md",
            "accuracy_vs_bytes.png",
            "kept_per_class.png",
            "energy_histogram.png",
        ]
    )
    for p in paths:
        assert p.stat().st_size > 0
    assert (tmp_path / "r" / "accuracy_vs_bytes.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["payload_bytes"] == 1900
    assert load_report(tmp_path / "r")["strategy"] == "safety-net"
    assert not list((tmp_path / "r").glob(".*tmp"))


def test_render_markdown_marks_chosen_candidate() -> None:
    text = render_markdown(_report())
    assert "safety-net **(chosen)**" in text
    assert "1900 bytes" in text and "80.0 %" in text


def test_write_report_names_missing_key(tmp_path: Path) -> None:
    report = _report()
    del report["candidates"][1]["val_accuracy"]
    with pytest.raises(BuilderError, match="candidate 1 is missing key 'val_accuracy'"):
        write_report(report, tmp_path)


def test_load_report_names_bad_file(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("{not json")
    with pytest.raises(BuilderError, match="not valid JSON"):
        load_report(tmp_path)


def test_energy_histogram_counts_kept_subset() -> None:
    hist = energy_histogram(np.arange(10.0), np.array([0, 1, 9]), bins=5)
    assert sum(hist["all"]) == 10 and sum(hist["kept"]) == 3
