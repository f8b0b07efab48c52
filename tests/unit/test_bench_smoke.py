"""The `make bench` renderer on a tiny fake results dict: summary, README markers, plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.render import make_plots, render_markdown, replace_between_markers
from bench.run import main as bench_main


def _ms(mean: float, sd: float = 0.01, n: int = 2) -> dict[str, Any]:
    return {"mean": mean, "sd": sd, "n": n}


def _accuracy() -> dict[str, Any]:
    ratio_runs: list[dict[str, Any]] = [
        {
            "seed": 0,
            "setting": setting,
            "ratio": ratio,
            "keep": keep,
            "codec": {"paper_bytes": 1000, "best_bytes": 700, "bound_bytes": 650},
        }
        for setting in ("low-energy", "random")
        for ratio, keep in ((0.01, 28), (0.05, 140))
    ]
    summary = {
        "teacher_accuracy": 0.9,
        "teacher_balanced_accuracy": 0.88,
        "oracle_accuracy": _ms(0.8),
        "oracle_balanced_accuracy": _ms(0.79),
        "ratios": [
            {
                "setting": r["setting"],
                "ratio": r["ratio"],
                "keep": r["keep"],
                "payload_bytes": _ms(900.0 + r["keep"]),
                "accuracy": _ms(0.7 if r["setting"] == "random" else 0.6),
                "balanced_accuracy": _ms(0.65),
            }
            for r in ratio_runs
        ],
        "budgets": [
            {
                "budget": "2KiB",
                "budget_bytes": 2048,
                "auto_choices": ["random", "safety-net(alpha=0.5,s=0.5)"],
                "keep": _ms(500),
                "payload_bytes": _ms(2000),
                "accuracy": _ms(0.75),
                "balanced_accuracy": _ms(0.74),
                "relative_to_oracle": _ms(0.93),
                "seconds": _ms(12.0),
                "settings_at_cap": {
                    "random": {
                        "keep": _ms(600),
                        "payload_bytes": _ms(2040),
                        "accuracy": _ms(0.73),
                        "balanced_accuracy": _ms(0.72),
                    }
                },
            }
        ],
    }
    task = {
        "num_classes": 3,
        "train_images": 30,
        "test_images": 30,
        "ratio_runs": ratio_runs,
        "auto_runs": [{"peak_rss_mb": 900.0}],
        "summary": summary,
    }
    return {
        "device": "lite0-64-int8",
        "teacher_encoder": "lite1-96",
        "corpus": {"size": 2790},
        "seeds": [0, 1],
        "tasks": {"fashion": task, "clipart": task},
    }


def _alternatives() -> dict[str, Any]:
    head_rows = [
        {"precision": p, "bytes": b, "accuracy": 0.9, "balanced_accuracy": 0.89}
        for p, b in (("fp32", 40000), ("int8", 9000), ("int4", 4000))
    ]
    task = {
        "summary": {
            "budgets": [
                {
                    "budget": "2KiB",
                    "budget_bytes": 2048,
                    "plada_auto": _ms(0.75),
                    "plada_auto_balanced": _ms(0.74),
                    "random_reference": _ms(0.7),
                    "random_reference_balanced": _ms(0.69),
                    "images_best_format": ["raw"],
                    "images_count": _ms(6),
                    "images_accuracy": _ms(0.4),
                    "images_balanced_accuracy": _ms(0.41),
                    "teacher_head_fits": [],
                }
            ],
            "fl": {
                "bytes_per_device": 102480,
                "accuracy": _ms(0.77),
                "balanced_accuracy": _ms(0.76),
            },
        },
        "weights": {
            "teacher_head": {"encoder": "lite1-96", "valid_for": "exact", "rows": head_rows},
            "device_head": {"encoder": "lite0-64-int8", "valid_for": "exact", "rows": head_rows},
        },
        "fl": [{"devices": 10, "images_per_device": 3}],
    }
    return {
        "device": "lite0-64-int8",
        "teacher_encoder": "lite1-96",
        "formats": ["jpeg-q30", "png", "raw"],
        "tasks": {"fashion": task, "clipart": task},
    }


def _hetero() -> dict[str, Any]:
    row = {
        "device_class": "raspberry-pi-4",
        "encoder": "lite0-64-int8",
        "budget": "8KiB",
        "accuracy": _ms(0.7),
        "balanced_accuracy": _ms(0.69),
        "oracle_accuracy": _ms(0.8),
        "oracle_balanced_accuracy": _ms(0.79),
        "relative_to_oracle": _ms(0.875),
        "balanced_relative_to_oracle": _ms(0.87),
    }
    task = {"summary": [row], "unavailable": {"opennsfw-224": "EncoderError: not exportable"}}
    return {
        "payloads_chosen_for": "lite0-64-int8",
        "teacher_encoder": "lite1-96",
        "tasks": {"fashion": task},
    }


def _fleet_run(agents: int, median: float, all_ready: float) -> dict[str, Any]:
    usage = {"cpu_s": 0.5, "cpu_percent": 10.0, "rss_mb": 10.0, "peak_rss_mb": 12.0}
    return {
        "agents": agents,
        "workers": 1,
        "broker": "mosquitto",
        "budget_bytes": 8192,
        "payload_bytes": 8000,
        "kept_images": 7000,
        "chunk_bytes": 1024,
        "messages": 10,
        "publish_acked_s": 0.02,
        "first_byte_s": 0.01,
        "ready_first_s": median,
        "ready_median_s": median,
        "ready_p90_s": all_ready,
        "all_ready_s": all_ready,
        "time_to_model_median_s": median,
        "results_seen_by_builder_s": all_ready + 0.1,
        "results_seen": agents,
        "lost": 0,
        "incomplete_devices": 0,
        "duplicate_messages": 0,
        "wire_bytes_per_device": {"mean": 9100.0, "min": 9100, "max": 9100},
        "payload_bytes_per_device": 8900.0,
        "overhead_bytes_per_device": 200.0,
        "messages_per_device": 10.0,
        "window_s": all_ready,
        "broker_usage": usage | {"rss_per_agent_kb": 1024.0},
        "client_usage": usage | {"cpu_s": 0.2 * agents, "rss_per_agent_kb": 1024.0},
        "connect": {
            "seconds": 1.0,
            "broker_cpu_s": 0.1,
            "broker_rss_mb": 9.0,
            "clients_rss_mb": 100.0,
        },
        "loadavg_1m": 1.2,
    }


def _results() -> dict[str, Any]:
    return {
        "meta": {
            "date": "2026-11-27 23:00 UTC",
            "git_commit": "abc1234",
            "machine": {"cpu_model": "Fake CPU", "nproc": 2, "ram_gib": 23.5, "python": "3.11"},
            "total_seconds": 3725.0,
            "timings": {"accuracy": 3000.0, "fleet": 725.0},
            "seeds": [0, 1],
            "reduced": ["1 seed for hetero"],
        },
        "accuracy": _accuracy(),
        "alternatives": _alternatives(),
        "hetero": _hetero(),
        "codec": {"error": "RuntimeError: boom"},
        "device": None,
        "fleet": {
            "payload": "signed task payloads of 8,000 B",
            "machine": {"cpu_model": "Fake CPU", "nproc": 2, "loadavg_start": 1.0},
            "settings": {
                "workers": 2,
                "switch_interval_s": 0.05,
                "chunk_bytes": 1024,
                "ready_timeout_s": 120.0,
                "state_on": "/dev/shm",
                "broker_max_connections": 20000,
                "broker_nofile_requested": 65536,
                "broker_autosave_interval_s": 60,
                "broker_tcp_nodelay": True,
            },
            "target": {"agents": 10, "all_ready_s": 30.0, "lost": 0},
            "runs": [_fleet_run(1, 0.04, 0.04), _fleet_run(10, 0.05, 0.94)],
        },
    }


def test_render_markdown_shows_every_section_and_errors() -> None:
    # Prepare
    results = _results()
    # Execute
    text = render_markdown(results, {"accuracy": "bench/results/accuracy_per_byte.png"})
    # Assert
    assert "Total run time **1:02:05**" in text
    assert "at commit `abc1234` on 2026-11-27 23:00 UTC" in text
    assert "Fake CPU, 2 cores" in text
    assert "**Reduced:** 1 seed for hetero" in text
    assert "75.0 ± 1.0" in text  # --auto at 2 KiB, mean ± sd in points
    assert "94 %" in text  # 0.75 / 0.80 of the device-oracle
    assert "![accuracy per byte](bench/results/accuracy_per_byte.png)" in text
    assert "`opennsfw-224` not measured: EncoderError: not exportable" in text
    assert "bench.codec failed: `RuntimeError: boom`" in text
    assert "bench.device: not run" in text
    assert "PLADA is ahead in 2 of 2" in text
    # accuracy for fashion, balanced accuracy for clipart: 75 - 70 and 74 - 69 points
    assert "2 of 2 task/budget cases: fashion 2KiB (+5.0), clipart 2KiB (+5.0) (random" in text
    # student / teacher: fashion 0.75 / 0.90, clipart 0.74 / 0.88 (balanced); paper median 82 %
    assert "median 82 %, its ten datasets" in text
    assert "reach 83 % (fashion 2KiB) to 84 % (clipart 2KiB) of the teacher" in text
    assert "at or above the paper's median in 2 of 2 task/budget cases" in text
    assert "met by 4 of 4 real selections" in text  # 30 % saved at the 1 % ratio (<= 2 %)
    assert "| 10 | 8,000 | 10 | 0.02 | 0.05 | 0.94 | 0.94 | 0 | 9,100 |" in text
    assert "10 agents, 8,000 B: all ready 0.94 s after the publish, 0 lost" in text
    # 10 agents x 0.2 CPU s on 2 cores: at least 1.0 s; one device of the 1-agent run: 0.04 s
    assert "cannot take less than 1.0 s" in text
    assert "the median device was ready 0.04 s after its first byte" in text


def test_replace_between_markers_keeps_the_rest_and_rejects_missing_markers() -> None:
    # Prepare
    text = "intro\n<!-- results:start -->\nold\n<!-- results:end -->\nafter\n"
    # Execute
    out = replace_between_markers(text, "new body\n")
    # Assert
    assert out == "intro\n<!-- results:start -->\nnew body\n<!-- results:end -->\nafter\n"
    with pytest.raises(ValueError, match="markers"):
        replace_between_markers("no markers here", "x")


def test_make_plots_writes_pngs(tmp_path: Path) -> None:
    # Prepare
    results = _results()
    # Execute
    paths = make_plots(results, tmp_path)
    # Assert
    assert set(paths) == {"accuracy", "alternatives", "hetero", "fleet"}
    for path in paths.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_run_render_only_updates_readme_from_json(tmp_path: Path) -> None:
    # Prepare: results JSON as the modules write them, and a README with markers.
    import json

    out = tmp_path / "results"
    out.mkdir()
    results = _results()
    for name in ("accuracy", "alternatives", "hetero", "fleet"):
        (out / f"{name}.json").write_text(json.dumps(results[name]), encoding="utf-8")
    (out / "run.json").write_text(json.dumps(results["meta"]), encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:start -->\n<!-- results:end -->\ntail\n", encoding="utf-8")
    # Execute
    code = bench_main(["--render-only", "--out", str(out), "--readme", str(readme)])
    # Assert
    text = readme.read_text(encoding="utf-8")
    assert code == 0
    assert "### Accuracy per byte" in text and text.endswith("<!-- results:end -->\ntail\n")
    assert (out / "summary.md").read_text(encoding="utf-8").startswith("# Benchmark results")
    assert (out / "accuracy_per_byte.png").exists()


def test_bench_run_records_the_load_average_of_its_start_not_of_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a module that leaves the machine loaded (as the 1,000-agent fleet module does)
    import json
    import os

    import bench.run

    load = [0.5]

    def loaded_module(_ctx: object) -> dict[str, Any]:
        load[0] = 55.0
        return {}

    monkeypatch.setattr(os, "getloadavg", lambda: (load[0], 0.0, 0.0))
    monkeypatch.setattr(bench.run, "_runner", lambda name, results: loaded_module)
    out = tmp_path / "results"
    # Execute
    bench_main(["--only", "codec", "--out", str(out), "--work", str(tmp_path / "w"), "--no-readme"])
    # Assert
    meta = json.loads((out / "run.json").read_text(encoding="utf-8"))
    assert meta["machine"]["loadavg_start"] == 0.5


def test_bench_run_releases_what_a_module_memoised_before_the_next_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: modules that memoise task features in the run context, as bench.hetero does
    import bench.run
    from bench._common import BenchContext

    seen: list[int] = []

    def memoising_module(ctx: BenchContext) -> dict[str, Any]:
        seen.append(len(ctx._features))
        ctx._features[("fashion", "lite0-64-int8")] = object()
        ctx._reference_rows["lite0-64-int8"] = {}
        return {}

    monkeypatch.setattr(bench.run, "_runner", lambda name, results: memoising_module)
    monkeypatch.setattr(bench.run, "render", lambda *args: None)
    out = tmp_path / "results"
    # Execute
    bench_main(
        ["--only", "codec,corpus", "--out", str(out), "--work", str(tmp_path / "w"), "--no-readme"]
    )
    # Assert: the second module starts with nothing memoised by the first
    assert seen == [0, 0]
