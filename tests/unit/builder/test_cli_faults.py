"""`plada-build task` and `publish` under bad input: a named error before any work, never a
traceback (issue 14, items 6, 7, 8, 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import builder.commands.progress
import builder.features.sources
from builder.cli import main
from plada.signing import generate_keypair
from tests.unit.builder.test_task_cli import _PixelFeatures
from tools.fleet_harness import make_keys, make_payload_bytes
from tools.tiny.corpus import make_tiny_corpus, make_tiny_imagefolder
from tools.tiny.damage import gray_png


@pytest.fixture
def world(tmp_path: Path) -> Path:
    make_tiny_corpus(tmp_path / "corpus", num_images=60)
    make_tiny_imagefolder(tmp_path / "target", train_per_class=3, test_per_class=2)
    generate_keypair(tmp_path / "keys")
    return tmp_path


def _argv(root: Path, *extra: str, out: Path | None = None) -> list[str]:
    return [
        "task",
        "--corpus", str(root / "corpus"),
        "--target", str(root / "target"),
        "--key", str(root / "keys" / "private.pem"),
        "--out", str(out or root / "out" / "task.plada"),
        "--report", str(root / "out" / "report"),
        "--teacher-encoder", "lite1-96",
        "--strategy", "random",
        "--no-progress",
        *extra,
    ]  # fmt: skip


class _CountingFeatures(_PixelFeatures):
    corpus_calls = 0

    def corpus_features(self, corpus: Any) -> Any:
        type(self).corpus_calls += 1
        return super().corpus_features(corpus)


def test_task_refuses_a_decompression_bomb_in_the_train_folder(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    monkeypatch.setattr(builder.features.sources, "EncoderFeatures", _PixelFeatures)
    gray_png(world / "target" / "train" / "circle" / "zz-bomb.png", width=20_000, height=20_000)
    # Execute
    code = main(_argv(world, "--budget", "1KiB"))
    # Assert
    err = capsys.readouterr().err
    assert code == 1
    assert "zz-bomb.png: over the decode bound" in err


def test_task_checks_its_outputs_before_any_work(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: --out inside a path that is a file, not a folder
    built: list[bool] = []

    def build(*args: Any, **kwargs: Any) -> Any:
        built.append(True)
        raise RuntimeError("the build ran")

    monkeypatch.setattr(builder.commands.progress, "build_with_progress", build)
    blocker = world / "blocker"
    blocker.write_text("a file", encoding="utf-8")
    # Execute
    code = main(_argv(world, "--budget", "1KiB", out=blocker / "task.plada"))
    # Assert
    assert code == 1 and built == []
    assert f"cannot write {blocker / 'task.plada'}" in capsys.readouterr().err


def test_task_refuses_a_budget_no_signed_payload_fits_in_before_embedding(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    _CountingFeatures.corpus_calls = 0
    monkeypatch.setattr(builder.features.sources, "EncoderFeatures", _CountingFeatures)
    # Execute
    code = main(_argv(world, "--budget", "10B"))
    # Assert: refused before the corpus was embedded
    assert code == 1
    assert _CountingFeatures.corpus_calls == 0
    assert "budget 10 B is too small" in capsys.readouterr().err


def test_publish_rejects_chunk_sizes_it_cannot_use_as_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a signed 30+ KB payload
    keys = make_keys(tmp_path / "keys")
    payload = tmp_path / "big.plada"
    payload.write_bytes(make_payload_bytes(keys, k=60_000, size=1_000_000))
    assert payload.stat().st_size > 30_000
    base = ["publish", str(payload), "--group", "lab", "--broker", "mqtt://127.0.0.1:9"]
    # Execute
    with pytest.raises(SystemExit) as too_small:
        main([*base, "--max-chunk-bytes", "100"])
    small_err = capsys.readouterr().err
    manifest = main([*base, "--max-chunk-bytes", "1024"])
    manifest_err = capsys.readouterr().err
    # Assert: argparse's usage exit, and a named error; nothing was sent (port 9 is closed)
    assert too_small.value.code == 2 and "100 is below the minimum of 1024" in small_err
    assert manifest == 2 and "manifest" in manifest_err and "max_chunk_bytes" in manifest_err
