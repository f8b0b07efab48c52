"""bench.corpus_scale's pure parts: the fits to 14.2M, the merge of stage results by size, and
the rendered section and plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bench.corpus_scale import IMAGENET_21K, _merge, extrapolate, fit
from bench.render.corpus_scale import corpus_scale_lines
from bench.render.plots import plot_corpus_scale
from bench.schema.corpus_scale import CorpusScaleResults


def _measured(wall: float, rss: float, **extra: Any) -> dict[str, Any]:
    return {"command": "x", "wall_s": wall, "user_s": wall, "sys_s": 0.1,
            "peak_rss_mb": rss, "loadavg_1m": 1.5, **extra}  # fmt: skip


def _row(n: int) -> dict[str, Any]:
    k = n / 1e5
    apply = {"kept": 20_000, "features_computed": 0, "payload_to_model_s": 1.5,
             "train_s": 0.9, "rss_mb_of_process": 250.0}  # fmt: skip
    return {
        "images": n,
        "build": _measured(
            45 * k, 250, fingerprint="f" * 64, bytes_on_disk=int(4e8 * k), images_per_s=2200.0
        ),
        "verify": _measured(1.4 * k, 190, ok=True, images_per_s=70_000.0),
        "reads": _measured(
            1.0, 180, num_reads=5000, open_s=0.1, images_per_s=9000.0, bytes_per_s=90_000.0
        ),
        "embed": _measured(60 * k, 400, images_per_s=1600.0, feature_bytes=int(5.12e8 * k)),
        "builder": _measured(
            30 * k, 600 + 300 * k, kept=20_000, payload_bytes=30_000, stage_seconds={"leakage": 3.0}
        ),
        "apply_cold": {**_measured(30, 400), **apply, "features_computed": 20_000},
        "apply_warm": {**_measured(2.0, 250 + k), **apply},
    }


def _results() -> dict[str, Any]:
    sizes = [_row(n) for n in (100_000, 300_000, 1_000_000)]
    return {
        "date": "2026-12-06 20:00 UTC",
        "git_commit": "abc1234",
        "machine": {"cpu_model": "test CPU", "nproc": 2, "ram_gib": 23.5},
        "settings": {
            "base_corpus": "ref-v1",
            "base_fingerprint": "68cb" * 16,
            "seed": 0,
            "encoder": "lite0-64-int8",
            "feature_dim": 1280,
            "task": "fashion",
            "strategy": "low-energy",
            "kept": 20_000,
        },
        "sizes": sizes,
        "extrapolation": extrapolate(sizes),
    }


def test_a_line_through_exact_points_is_evaluated_at_imagenet_21k() -> None:
    got = fit([100_000, 300_000, 1_000_000], [12.0, 32.0, 102.0], what="t", unit="s")
    assert got["slope"] == pytest.approx(1e-4) and got["intercept"] == pytest.approx(2.0)
    assert got["value"] == pytest.approx(1e-4 * IMAGENET_21K + 2.0)
    assert got["points"] == 3


def test_fits_skip_stages_measured_at_fewer_than_two_sizes() -> None:
    rows = [_row(100_000), {"images": 300_000, "build": _row(300_000)["build"]}]
    names = {f["what"] for f in extrapolate(rows)}
    assert "corpus on disk" in names and "corpus build" in names
    assert not any("builder" in n or "embedding" in n for n in names)


def test_merge_keeps_earlier_stages_of_a_size_and_orders_sizes(tmp_path: Path) -> None:
    # Prepare
    out = tmp_path / "corpus_scale.json"
    out.write_text(json.dumps({"sizes": [_row(300_000)]}), encoding="utf-8")
    newer = _row(300_000)["verify"] | {"wall_s": 9.0}
    # Execute
    doc = _merge(out, 300_000, {"verify": newer})
    doc = {**doc, "sizes": [*doc["sizes"], {"images": 100_000}]}
    doc["sizes"].sort(key=lambda r: r["images"])
    # Assert
    (_, kept) = doc["sizes"]
    assert kept["verify"]["wall_s"] == 9.0 and kept["build"] == _row(300_000)["build"]


def test_the_section_states_targets_fits_and_what_changes_at_scale(tmp_path: Path) -> None:
    # Prepare
    result = CorpusScaleResults.model_validate(_results())
    # Execute
    text = "\n".join(corpus_scale_lines(result, {"corpus_scale": "bench/results/x.png"}))
    png = plot_corpus_scale(result, tmp_path / "scale.png")
    # Assert
    assert "| 1,000,000 |" in text and "14,200,000" in text
    assert "builder peak RSS 3,600 MB (target <= 8,192: met)" in text
    assert "warm apply of 20,000 indices 1.50 s" in text and "met)" in text
    assert "--shard" in text and "![corpus size](bench/results/x.png)" in text
    assert png is not None and png.stat().st_size > 10_000


def test_a_missed_target_says_so_and_a_bad_field_is_named() -> None:
    doc = _results()
    doc["sizes"][-1]["apply_warm"]["peak_rss_mb"] = 420.0
    text = "\n".join(corpus_scale_lines(CorpusScaleResults.model_validate(doc), {}))
    assert "420 MB (target <= 3 s and <= 300 MB: MISSED)" in text
    doc["sizes"][0]["build"]["wall_s"] = "slow"
    with pytest.raises(ValidationError, match="wall_s"):
        CorpusScaleResults.model_validate(doc)
