"""bench.builder_warm and bench.device_budget: their helpers and their Results sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.builder_warm import fresh_cache_root, merge_into
from bench.device_budget import best_of, config_toml, constrained, pi4_settings, profile_cap_mb
from bench.render import render_markdown
from tests.unit.test_bench_smoke import _results


def _build(total: float, sha: str = "ab") -> dict[str, Any]:
    return {
        "wall_s": total + 3,
        "cpu_s": total - 10,
        "total_s": total,
        "timings_s": {"features": 1.5, "validation": 9.0, "leakage": 2.0},
        "peak_rss_mb": 1500.0,
        "load_average_1min": 3.2,
        "result": {
            "teacher": "lite1-96",
            "strategy": "class-top-k",
            "num_indices": 5031,
            "payload_bytes": 8190,
            "val_accuracy": [0.8, 0.7],
            "teacher_accuracy": 0.85,
            "device_accuracy": 0.8,
            "leakage_flags": 0,
            "selection_sha256": sha,
        },
    }


def _warm_run(label: str, builds: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": label,
        "commit": label[:3],
        "machine": {"cpu_model": "Fake CPU", "nproc": 2},
        "budget": "8KiB",
        "teachers": {"one": "lite1-96", "two": "lite1-96,lite0-64-int8"},
        "runs": builds,
    }


def test_builder_warm_section_shows_before_after_and_whether_the_results_stayed() -> None:
    # Prepare: the second build changed its selection; one build failed before
    results = _results()
    results["builder_warm"] = {
        "runs": {
            "before": _warm_run(
                "before",
                {"fashion/two/first": _build(120.0), "fashion/two/again": {"error": "boom"}},
            ),
            "after": _warm_run(
                "after",
                {"fashion/two/first": _build(50.0), "fashion/two/again": _build(20.0, "cd")},
            ),
        }
    }
    # Execute
    text = render_markdown(results, {})
    # Assert
    section = text.split("### Builder on a warm cache", 1)[1]
    assert "| fashion | two teachers | first | 120.0 | **50.0** | 110.0 | **40.0** |" in section
    assert "validation 9.0" in section and "| yes |" in section
    assert "failed (boom)" in section and "| n/a |" in section


def _apply(seconds: float, rss: float) -> dict[str, Any]:
    return {"payload_to_model_s": seconds, "train_s": 0.3, "features_computed": 0,
            "peak_rss_mb": rss}  # fmt: skip


def test_device_budget_section_shows_warm_and_cold_per_kept_count() -> None:
    # Prepare
    results = _results()
    results["budget"] = {
        "machine": {"cpu_model": "Fake CPU", "nproc": 2},
        "load_average_1min": {"start": 2.0, "end": 3.0},
        "constraint": {"cpu": "taskset -c 0", "memory": "prlimit --data=256MiB", "cap_mb": 256},
        "settings": {"encoder": "lite0-64-int8.onnx", "batch_size": 16, "dtype": "float16"},
        "corpus_images": 83480,
        "apply": [
            {
                "kept_images": 5000,
                "cap_mb": 256,
                "warm": {**_apply(0.91, 180.0), "process_cpu_s": 1.25},
                "cold": {"error": "exit 1: Unable to allocate 24.4 MiB"},
            }
        ],
        "before": {
            "code": "/old",
            "apply": [
                {
                    "kept_images": 5000,
                    "cap_mb": 256,
                    "warm": _apply(4.2, 215.0),
                    "cold": {"error": "exit 1: Unable to allocate 24.4 MiB"},
                }
            ],
        },
        "predict": {
            "images": 200,
            "single_ms_median": 3.2,
            "single_ms_p95": 4.0,
            "batched_ms_per_image": 1.1,
            "batch_size": 16,
        },
    }
    # Execute
    text = render_markdown(results, {})
    # Assert
    section = text.split("### Device on a Raspberry-Pi-4-like budget", 1)[1]
    row = "| 5,000 | 256 | 0.91 | 1.25 | 180 | failed: out of memory | n/a | n/a | 4.20 s, 215 MB"
    assert row + " / failed: out of memory |" in section
    assert "**3.2 ms** per single image" in section


def test_best_of_keeps_the_fastest_run_and_the_highest_peak() -> None:
    # Execute
    best = best_of([_apply(1.2, 150.0), {"error": "exit 1"}, _apply(0.9, 140.0)])
    # Assert
    assert best["payload_to_model_s"] == 0.9 and best["peak_rss_mb"] == 150.0
    assert best["failed_runs"] == 1 and best["all_runs_s"] == [1.2, 0.9]
    assert best_of([{"error": "exit 1"}]) == {"error": "exit 1"}


def test_the_child_runs_on_one_core_under_a_data_limit() -> None:
    # Execute
    cmd = constrained(["python", "-V"], cap_mb=256)
    # Assert
    assert cmd[:3] == ["taskset", "-c", "0"]
    assert f"--data={256 * 1024 * 1024}" in cmd and cmd[-2:] == ["python", "-V"]


def test_the_budget_config_is_the_pi4_profile_with_one_encoder_thread(tmp_path: Path) -> None:
    # Prepare
    from agent.config import load_config

    text = config_toml(
        tmp_path, corpus=tmp_path / "c", encoder=tmp_path / "e.onnx", cache=tmp_path / "k",
        name="warm",
    )  # fmt: skip
    (tmp_path / "agent.toml").write_text(text, encoding="utf-8")
    # Execute
    config = load_config(tmp_path / "agent.toml")
    # Assert
    profile = pi4_settings()
    assert config.encoder.threads == 1
    assert config.encoder.batch_size == profile["batch_size"]
    assert config.cache.dtype == profile["dtype"]
    assert config.cache.block_size == profile["block_size"]
    assert config.head.backend == profile["head_backend"]


def test_a_fresh_cache_root_links_the_corpus_caches_only(tmp_path: Path) -> None:
    # Prepare: a shared root with a corpus cache and a task image cache
    shared = tmp_path / "shared"
    (shared / "68cb3417ac42a594" / "onnx-x").mkdir(parents=True)
    (shared / "images" / "onnx-x").mkdir(parents=True)
    # Execute
    root = fresh_cache_root(tmp_path / "fresh", shared)
    # Assert
    assert (root / "68cb3417ac42a594").is_symlink()
    assert (root / "68cb3417ac42a594" / "onnx-x").is_dir()
    assert not (root / "images").exists()


def test_runs_of_other_labels_are_kept_when_one_is_written(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "builder_warm.json"
    merge_into(path, _warm_run("before", {}))
    # Execute
    merged = merge_into(path, _warm_run("after", {}))
    # Assert
    assert set(merged["runs"]) == {"before", "after"}
    with pytest.raises(KeyError):
        merged["runs"]["other"]


def test_the_memory_cap_is_the_pi4_profiles_service_cap() -> None:
    # Execute / Assert: firmware_configs/raspberry-pi-4.toml says memory_max = "768M"
    assert profile_cap_mb() == 768
