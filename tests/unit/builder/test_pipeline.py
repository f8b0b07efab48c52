"""The task pipeline end to end on the tiny corpus, with cheap pixel features as encoders."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builder.errors import BudgetError, BuilderError
from builder.features.sources import CorpusImages
from builder.pipeline.budget import parse_budget
from builder.pipeline.build import build_task
from builder.pipeline.config import TaskConfig
from builder.pipeline.targets import load_target
from plada.corpus import Corpus
from plada.head import HeadHyperParams
from plada.payload import decode_payload
from plada.signing import generate_keypair, load_private_key, load_public_key
from tools.tiny.corpus import make_tiny_corpus, make_tiny_imagefolder


class PixelFeatures:
    """Downsampled pixels: a stand-in encoder; `size` differs between teacher and device."""

    def __init__(self, size: int, name: str) -> None:
        self._size = size
        self._name = name

    @property
    def id(self) -> str:
        return self._name

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = [
            np.asarray(im.convert("RGB").resize((self._size, self._size)), np.float32).ravel()
            for im in images
        ]
        return np.stack(rows) / 255.0

    def corpus_features(self, corpus: CorpusImages) -> np.ndarray:
        return self.image_features(corpus.images(range(len(corpus))))


_HP = HeadHyperParams(epochs=10, learning_rate=1e-2)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, Path, Path]:
    root = tmp_path_factory.mktemp("pipeline")
    corpus = make_tiny_corpus(root / "corpus", num_images=300)
    target = make_tiny_imagefolder(root / "target", train_per_class=9, test_per_class=8)
    generate_keypair(root / "keys")
    return corpus, target, root / "keys"


def _build(world: tuple[Corpus, Path, Path], **kwargs: object) -> tuple[bytes, dict[str, object]]:
    corpus, target, keys = world
    config = TaskConfig(hp=_HP, created_at=1_800_000_000, **kwargs)  # type: ignore[arg-type]
    result = build_task(
        corpus,
        load_target(target),
        teacher_source=PixelFeatures(8, "pix8"),
        device_sources={"lite0-64-int8": PixelFeatures(4, "pix4")},
        signing_key=load_private_key(keys / "private.pem"),
        config=config,
    )
    return result.payload, result.report


def test_build_task_auto_fits_byte_budget_and_reports(world: tuple[Corpus, Path, Path]) -> None:
    # Execute
    payload, report = _build(world, budget=parse_budget("700B"))
    # Assert
    corpus, _, keys = world
    key_id, public = load_public_key(keys / "public.pem")
    decoded = decode_payload(payload, trusted_keys={key_id: public})
    assert len(payload) <= 700 and report["payload_bytes"] == len(payload)
    assert decoded.corpus.fingerprint == corpus.fingerprint
    assert len(decoded.indices) == report["num_indices"]
    candidates = report["candidates"]
    assert isinstance(candidates, list) and len(candidates) > 5
    assert sum(1 for c in candidates if c["chosen"]) == 1
    assert all(c["payload_bytes"] <= 700 for c in candidates)
    for key in ("teacher_accuracy", "device_accuracy", "device_oracle_accuracy", "leakage_flags"):
        assert key in report
    assert float(report["teacher_accuracy"]) > 0.7  # type: ignore[arg-type]


def test_build_task_single_strategy_count_budget(world: tuple[Corpus, Path, Path]) -> None:
    _, report = _build(world, budget=parse_budget("40"), strategy="class-top-k")
    assert report["strategy"] == "class-top-k" and report["num_indices"] == 40
    assert report["kept_per_class"] == [10, 10, 10, 10]
    assert len(report["candidates"]) == 1  # type: ignore[arg-type]


def test_build_task_names_too_small_byte_budget(world: tuple[Corpus, Path, Path]) -> None:
    with pytest.raises(BudgetError, match="too small"):
        _build(world, budget=parse_budget("100B"), strategy="random")


def test_build_task_rejects_missing_default_device(world: tuple[Corpus, Path, Path]) -> None:
    with pytest.raises(BuilderError, match="default device"):
        _build(world, budget=parse_budget("40"), default_device="lite1-96")


class _SpecPixels(PixelFeatures):
    def __init__(self, spec: str, **_: object) -> None:
        super().__init__(8 if spec.startswith("lite1") else 4, spec)


def test_make_builder_writes_payloads_reports_summary_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a data folder shaped like `make data` output, with one tiny target.
    import json

    import builder.features.sources
    from tools.make_builder import main

    make_tiny_corpus(tmp_path / "data" / "ref-v1", num_images=120)
    make_tiny_imagefolder(
        tmp_path / "data" / "targets" / "shapes", train_per_class=4, test_per_class=3
    )
    monkeypatch.setattr(builder.features.sources, "EncoderFeatures", _SpecPixels)
    # Execute
    code = main(
        ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "build"), "--tasks", "shapes",
         "--budgets", "12,600B", "--seeds", "0,1", "--folds", "2", "--no-progress"]
    )  # fmt: skip
    # Assert
    build = tmp_path / "build"
    assert code == 0
    assert (build / "keys" / "private.pem").exists()
    for stem in ("shapes-12", "shapes-600B"):
        assert (build / f"{stem}.plada").stat().st_size > 0
        assert (build / stem / "report.json").exists()
    summary = json.loads((build / "summary.json").read_text())
    assert [row["budget"] for row in summary] == ["12", "600B"]
    assert len(summary[0]["per_seed"]) == 2


def test_build_task_multi_keeps_the_best_validated_teacher(
    world: tuple[Corpus, Path, Path],
) -> None:
    # Prepare
    from builder.pipeline.build import build_task_multi

    corpus, target, keys = world
    config = TaskConfig(
        budget=parse_budget("24"), strategy="class-top-k", hp=_HP, created_at=1_800_000_000
    )
    # Execute
    result = build_task_multi(
        corpus,
        load_target(target),
        teacher_sources=[PixelFeatures(2, "pix2"), PixelFeatures(8, "pix8")],
        device_sources={"lite0-64-int8": PixelFeatures(4, "pix4")},
        signing_key=load_private_key(keys / "private.pem"),
        config=config,
    )
    # Assert
    choice = result.report["teacher_choice"]
    assert [c["encoder"] for c in choice] == ["pix2", "pix8"]
    best = max(choice, key=lambda c: c["val_accuracy"])
    assert best["chosen"] and result.report["teacher"]["encoder"] == best["encoder"]


class _CountingPixels(PixelFeatures):
    """PixelFeatures that remember how many target images each call embedded."""

    def __init__(self, size: int, name: str) -> None:
        super().__init__(size, name)
        self.calls: list[int] = []

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.calls.append(len(images))
        return super().image_features(images)

    def corpus_features(self, corpus: CorpusImages) -> np.ndarray:  # not counted
        return PixelFeatures.image_features(self, corpus.images(range(len(corpus))))


def test_a_teacher_that_loses_the_choice_never_embeds_the_test_split(
    world: tuple[Corpus, Path, Path],
) -> None:
    # Prepare
    from builder.pipeline.build import build_task_multi

    corpus, target, keys = world
    task = load_target(target)
    n_train, n_test = len(task.train.paths), len(task.test.paths)
    teachers = [_CountingPixels(2, "pix2"), _CountingPixels(8, "pix8")]
    device = _CountingPixels(4, "pix4")
    config = TaskConfig(
        budget=parse_budget("24"), strategy="class-top-k", hp=_HP, created_at=1_800_000_000
    )
    # Execute
    result = build_task_multi(
        corpus,
        task,
        teacher_sources=teachers,
        device_sources={"lite0-64-int8": device},
        signing_key=load_private_key(keys / "private.pem"),
        config=config,
    )
    # Assert: the chosen teacher and the device embedded both splits, the other train only
    chosen = result.report["teacher"]["encoder"]
    for teacher in teachers:
        want = [n_train, n_test] if teacher.id == chosen else [n_train]
        assert teacher.calls == want, teacher.id
    assert device.calls == [n_train, n_test]
    assert result.report["target"]["test_images"] == n_test
