"""`plada-build task` and `plada-build report` end to end on the tiny corpus."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import builder.features.sources
from builder.cli import main
from builder.features.sources import CorpusImages
from plada.payload import decode_payload
from plada.signing import generate_keypair, load_public_key
from tools.tiny.corpus import make_tiny_corpus, make_tiny_imagefolder


class _PixelFeatures:
    """Stand-in for EncoderFeatures: downsampled pixels, the size taken from the spec."""

    def __init__(self, spec: str, **_: Any) -> None:
        self._spec = spec
        self._size = 8 if spec.startswith("lite1") else 4

    @property
    def id(self) -> str:
        return self._spec

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        s = self._size
        rows = [np.asarray(im.convert("RGB").resize((s, s)), np.float32).ravel() for im in images]
        return np.stack(rows) / 255.0

    def corpus_features(self, corpus: CorpusImages) -> np.ndarray:
        return self.image_features(corpus.images(range(len(corpus))))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    make_tiny_corpus(root / "corpus", num_images=240)
    make_tiny_imagefolder(root / "target", train_per_class=8, test_per_class=6)
    generate_keypair(root / "keys")
    return root


def _task_argv(root: Path, *extra: str) -> list[str]:
    return [
        "task",
        "--corpus", str(root / "corpus"),
        "--target", str(root / "target"),
        "--key", str(root / "keys" / "private.pem"),
        "--out", str(root / "out" / "task.plada"),
        "--report", str(root / "out" / "report"),
        "--teacher-encoder", "lite1-96",
        "--no-progress",
        *extra,
    ]  # fmt: skip


def test_task_cli_writes_signed_payload_and_report(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    monkeypatch.setattr(builder.features.sources, "EncoderFeatures", _PixelFeatures)
    # Execute
    code = main(_task_argv(world, "--budget", "650B", "--auto", "--json"))
    # Assert
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    data = (world / "out" / "task.plada").read_bytes()
    key_id, public = load_public_key(world / "keys" / "public.pem")
    payload = decode_payload(data, trusted_keys={key_id: public})
    assert len(data) <= 650 and summary["payload_bytes"] == len(data)
    assert len(payload.indices) == summary["num_indices"]
    report = json.loads((world / "out" / "report" / "report.json").read_text())
    for key in (
        "teacher_accuracy",
        "device_accuracy",
        "device_oracle_accuracy",
        "strategy",
        "params",
        "payload_bytes",
        "num_indices",
        "leakage_flags",
        "candidates",
    ):
        assert key in report
    assert (world / "out" / "report" / "accuracy_vs_bytes.png").exists()
    # The report command re-renders from report.json alone.
    (world / "out" / "report" / "report.md").unlink()
    assert main(["report", str(world / "out" / "report"), "--render"]) == 0
    assert (world / "out" / "report" / "report.md").exists()


def test_task_cli_strategy_with_params_and_two_devices(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare
    monkeypatch.setattr(builder.features.sources, "EncoderFeatures", _PixelFeatures)
    # Execute
    code = main(
        _task_argv(
            world, "--budget", "5%", "--strategy", "safety-net", "--param", "s=1.0",
            "--param", "alpha=0", "--devices", "lite0-64-int8,lite1-96", "--json",
        )
    )  # fmt: skip
    # Assert
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["strategy"] == "safety-net" and summary["params"] == {"s": 1.0, "alpha": 0.0}
    assert summary["num_indices"] == 12
    assert set(summary["devices"]) == {"lite0-64-int8", "lite1-96"}


def test_task_cli_reports_too_small_budget(
    world: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(builder.features.sources, "EncoderFeatures", _PixelFeatures)
    code = main(_task_argv(world, "--budget", "64B", "--strategy", "random"))
    assert code == 1
    assert "too small" in capsys.readouterr().err


def test_task_cli_reports_bad_target(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _task_argv(world, "--budget", "1KiB")
    argv[argv.index("--target") + 1] = str(world / "nowhere")
    assert main(argv) == 1
    assert "target folder not found" in capsys.readouterr().err


def test_report_cli_names_missing_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "no report" in capsys.readouterr().err


@pytest.mark.torch
def test_task_cli_with_real_encoders_and_cache(
    world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: real EfficientNet-Lite0 at 32 px on torch for teacher and device (no export).
    argv = _task_argv(world, "--budget", "24", "--strategy", "class-top-k", "--json")
    argv[argv.index("--teacher-encoder") + 1] = "lite0-32"
    argv += ["--teacher-backend", "torch", "--devices", "lite0-32", "--cache", str(tmp_path)]
    # Execute
    code = main(argv)
    # Assert
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_indices"] == 24
    assert summary["teacher_accuracy"] > 0.5  # 4 shape classes, chance is 0.25
    assert list(tmp_path.rglob("features.npy"))  # the corpus went through the embedding cache
