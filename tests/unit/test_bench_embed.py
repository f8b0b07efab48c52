"""bench.embed_pipeline on a tiny real corpus and encoder, and its Results section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.embed_pipeline import (
    CorpusSample,
    Run,
    bench_encoder,
    paired_ratio,
    sample_indices,
    summarise,
)
from bench.render import render_markdown
from tests.unit.test_bench_smoke import _results
from tools.tiny.corpus import make_tiny_corpus
from tools.tiny.encoder import make_tiny_onnx_encoder

pytest.importorskip("onnxruntime")


def test_sample_is_evenly_spaced_and_bounded() -> None:
    # Execute
    rows = sample_indices(1000, 5)
    # Assert: first and last row included, every source region in proportion
    assert rows.tolist() == [0, 250, 500, 749, 999]
    assert len(sample_indices(3, 10)) == 3


def test_paired_ratio_compares_each_pass_with_its_own_bare_runs() -> None:
    # Prepare: pass 1 under load (everything slow), pass 2 quiet
    def run(rate: float) -> Run:
        return Run(seconds=100 / rate, images=100, user_s=1.0, sys_s=0.0, minor_faults=0)

    runs = {
        "pipeline": [run(40), run(90), run(80)],
        "bare_default": [run(30), run(60), run(50)],
        "bare_tuned": [run(50), run(100), run(100)],
    }
    # Execute / Assert: 0.8, 0.9 and 0.8 per pass (best-to-best would say 0.9)
    assert paired_ratio(runs) == pytest.approx(0.8)


def test_summarise_takes_the_best_rate_and_the_system_share_of_all_runs() -> None:
    # Prepare
    runs = [
        Run(seconds=2.0, images=100, user_s=1.0, sys_s=1.0, minor_faults=50),
        Run(seconds=1.0, images=100, user_s=3.0, sys_s=0.0, minor_faults=150),
    ]
    # Execute
    out = summarise(runs)
    # Assert
    assert out["images_per_s"] == 100.0
    assert out["median_images_per_s"] == 75.0
    assert out["sys_share"] == 0.2  # 1 s of 5 s
    assert out["minor_faults_per_image"] == 1.0
    assert len(out["runs"]) == 2


def test_bench_encoder_measures_pipeline_and_bare_on_the_same_images(tmp_path: Path) -> None:
    # Prepare: a tiny real corpus and ONNX encoder
    from plada.corpus import Corpus

    make_tiny_corpus(tmp_path / "corpus", num_images=300)
    corpus = Corpus.open(tmp_path / "corpus")
    encoder = make_tiny_onnx_encoder(tmp_path / "enc", size=32, feature_dim=8)
    sample = CorpusSample(corpus, sample_indices(len(corpus), 96))
    # Execute
    row = bench_encoder(str(encoder), sample, batch_size=40, repeats=2, work=tmp_path / "work")
    # Assert: three ways, two runs each, the pipeline's features are the bare session's
    for way in ("pipeline", "bare_default", "bare_tuned"):
        assert len(row[way]["runs"]) == 2
        assert row[way]["images_per_s"] > 0
        assert 0.0 <= row[way]["sys_share"] <= 1.0
    assert row["max_abs_diff_to_bare"] < 1e-5
    assert row["ratio_to_best_bare"] > 0 and row["paired_ratio"] > 0
    assert sample.fingerprint != corpus.fingerprint
    assert not any((tmp_path / "work").iterdir())  # each pass's cache is removed


def _embed_results() -> dict[str, Any]:
    def way(rate: float, sys_share: float) -> dict[str, Any]:
        return {
            "images_per_s": rate,
            "median_images_per_s": rate,
            "images_per_cpu_s": rate / 2,
            "sys_share": sys_share,
            "minor_faults_per_image": 4.0,
            "runs": [],
        }

    return {
        "sample": {"images": 4096, "how": "evenly spaced rows, every source in proportion"},
        "batch_size": 256,
        "run_rows": 32,
        "repeats": 3,
        "machine": {"cpus": 2, "loadavg_start": 2.5, "loadavg_end": 3.0},
        "encoders": [
            {
                "encoder": "lite1-96",
                "input_size": 96,
                "pipeline": way(780.0, 0.03),
                "bare_default": way(500.0, 0.12),
                "bare_tuned": way(900.0, 0.02),
                "ratio_to_best_bare": 0.867,
                "cpu_ratio_to_best_bare": 0.9,
                "paired_ratio": 0.84,
                "max_abs_diff_to_bare": 0.0,
                "meets_targets": True,
            }
        ],
    }


def test_render_shows_the_embedding_section() -> None:
    # Prepare
    results = _results()
    results["embed"] = _embed_results()
    # Execute
    text = render_markdown(results, {})
    # Assert
    assert "### Embedding pipeline" in text
    assert (
        "| lite1-96 | 780 | 500 | 900 | 0.87 | **0.84** | 390 / 450 | 0.90 | 3.0 % | 12.0 % |"
        in text
    )
    assert "1-min load average 2.5 at the start" in text


def test_render_without_the_embedding_results_has_no_section() -> None:
    assert "Embedding pipeline" not in render_markdown(_results(), {})
