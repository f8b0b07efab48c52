"""A payload with a view, end to end on the tiny device: the builder's simulated accuracy is what
the agent reaches when it applies the payload (issue 16: within 1 point).

The target is made to look different from the corpus (grey, downscaled, few grey levels), so the
builder proposes views from it; the device encoder is the tiny device's real ONNX encoder, run by
the agent's own backend on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.features import embed_images, load_extractor
from agent.pipeline import apply_payload
from agent.predict import Predictor
from builder.features.sources import CorpusImages
from builder.pipeline.budget import parse_budget
from builder.pipeline.build import build_task
from builder.pipeline.config import TaskConfig
from builder.pipeline.targets import load_target, read_images
from plada.payload import decode_payload
from plada.views import apply_view, view_from_ops
from tools.tiny.corpus import make_tiny_imagefolder
from tools.tiny.device import TinyDevice, make_device

# How the target "was scanned": not a view the builder is told about, it has to measure it.
SCAN = view_from_ops(
    [
        {"op": "grayscale"},
        {"op": "resize", "size": 10, "filter": "box"},
        {"op": "quantize", "levels": 6},
    ]
)


class AgentEncoder:
    """A FeatureSource over the device's encoder, run by the agent's backend."""

    def __init__(self, path: Path) -> None:
        self._extractor = load_extractor(path)

    @property
    def id(self) -> str:
        return "tiny"

    def corpus_features(self, corpus: CorpusImages) -> np.ndarray:
        return embed_images(self._extractor, corpus.images(range(len(corpus))))

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        return embed_images(self._extractor, list(images))


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> TinyDevice:
    return make_device(tmp_path_factory.mktemp("device"), num_images=400)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_tiny_imagefolder(
        tmp_path_factory.mktemp("target") / "t", train_per_class=15, test_per_class=25, seed=3
    )
    for path in root.rglob("*.png"):
        apply_view(SCAN, Image.open(path)).save(path)
    return root


def test_agent_reaches_the_builders_simulated_accuracy_under_a_view(
    device: TinyDevice, target: Path
) -> None:
    # Prepare
    task = load_target(target)
    source = AgentEncoder(device.encoder_path)
    config = TaskConfig(
        budget=parse_budget("120"),
        default_device="tiny",
        hp=device.config.head.hyper_params(),
        views=True,
        max_views=2,
        created_at=1_800_000_000,
    )
    # Execute: build (views proposed from the target and chosen on train folds), then apply
    result = build_task(
        device.corpus,
        task,
        teacher_source=source,
        device_sources={"tiny": source},
        signing_key=device.signing_key,
        config=config,
    )
    apply_payload(result.payload, config=device.config)
    probs = Predictor.from_config(device.config).predict_proba(read_images(task.test.paths))
    # Assert
    report = result.record
    assert report.view is not None, report.view_choice  # the measured view beat no view
    assert report.view_choice is not None and report.view_choice[0].view == "none"
    assert sum(c.chosen for c in report.view_choice) == 1
    payload = decode_payload(result.payload, trusted_keys={}, allow_unsigned=True)
    assert payload.view is not None and payload.view.digest == report.view.digest
    assert {"op": "resize", "size": 10, "filter": "box"} in report.view.ops  # measured side
    assert len(report.view_choice) == 3  # none, the full proposal, its geometry alone
    device_accuracy = float(np.mean(probs.argmax(axis=1) == task.test.labels))
    assert abs(device_accuracy - report.devices["tiny"].accuracy) <= 0.01


def test_markdown_shows_the_views(device: TinyDevice, target: Path) -> None:
    from builder.report.markdown import render_markdown

    config = TaskConfig(
        budget=parse_budget("60"),
        default_device="tiny",
        hp=device.config.head.hyper_params(),
        views=True,
        max_views=2,
        created_at=1_800_000_000,
    )
    source = AgentEncoder(device.encoder_path)
    result = build_task(
        device.corpus,
        load_target(target),
        teacher_source=source,
        device_sources={"tiny": source},
        signing_key=None,
        config=config,
    )
    text = render_markdown(result.record.to_json())
    assert "## Views" in text and "| `none`" in text
    assert text.count("**(chosen)**") == 2  # one candidate, one view
