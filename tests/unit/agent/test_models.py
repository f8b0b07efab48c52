"""The model store: ONNX export, atomic saves, previous version kept, rollback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from agent.errors import ModelStoreError
from agent.models import ModelMeta, ModelStore, export_head_onnx
from plada.head import HeadWeights, predict_proba


def _weights(dim: int = 6, num_classes: int = 3, seed: int = 0) -> HeadWeights:
    rng = np.random.default_rng(seed)
    return HeadWeights(
        weight=rng.normal(size=(dim, num_classes)).astype(np.float32),
        bias=rng.normal(size=num_classes).astype(np.float32),
        mean=rng.normal(size=dim).astype(np.float32),
        scale=rng.uniform(0.5, 2, size=dim).astype(np.float32),
    )


def _meta(version: int, task: str = "digits", num_classes: int = 3) -> ModelMeta:
    return ModelMeta(
        task=task,
        version=version,
        class_names=tuple(f"c{i}" for i in range(num_classes)),
        payload_digest=f"{version:064x}",
        created_at=1.0,
        train_seconds=0.5,
        train_accuracy=0.9,
        backend="numpy",
        hyper_params={"epochs": 3},
        encoder_id="lite0-64-int8",
        encoder_sha256="ab" * 32,
        feature_dim=6,
        num_examples=100,
        final_loss=0.3,
    )


def test_export_head_onnx_matches_numpy_predict_proba() -> None:
    # Prepare
    weights = _weights()
    features = np.random.default_rng(1).normal(size=(5, 6)).astype(np.float32)
    # Execute
    session = ort.InferenceSession(export_head_onnx(weights), providers=["CPUExecutionProvider"])
    (probs,) = session.run(["probabilities"], {"features": features})
    # Assert
    assert np.abs(probs - predict_proba(weights, features)).max() < 1e-6


def test_model_store_saves_and_reports_current(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    # Execute
    empty = store.current()
    stored = store.save(_weights(), _meta(1))
    # Assert
    assert empty is None
    current = store.current()
    assert current is not None and current.name == stored.name == "000001-digits-v1"
    assert current.meta == _meta(1)
    assert current.onnx_path.is_file()
    session = ort.InferenceSession(str(current.onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["task"] == "digits"


def test_model_store_keeps_previous_and_rolls_back(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    store.save(_weights(seed=1), _meta(1))
    store.save(_weights(seed=2), _meta(2))
    # Execute
    back = store.rollback()
    # Assert
    assert back.version == 1
    current = store.current()
    assert current is not None and current.version == 1
    assert [m.version for m in store.entries()] == [1]
    assert not (store.root / "000002-digits-v2").exists()
    with pytest.raises(ModelStoreError, match="oldest kept model"):
        store.rollback()


def test_model_store_rollback_on_empty_store_names_the_problem(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(ModelStoreError, match="model store is empty"):
        ModelStore(tmp_path).rollback()


def test_model_store_prunes_beyond_keep(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path, keep=2)
    # Execute
    for version in (1, 2, 3):
        store.save(_weights(), _meta(version))
    # Assert
    names = sorted(p.name for p in store.root.iterdir() if p.is_dir())
    assert names == ["000002-digits-v2", "000003-digits-v3"]
    assert [m.version for m in store.entries()] == [2, 3]


def test_model_store_failed_save_leaves_current_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    store.save(_weights(), _meta(1))
    real_replace = os.replace

    def crash_on_state(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if str(dst).endswith("state.json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_state)
    # Execute
    with pytest.raises(OSError, match="disk full"):
        store.save(_weights(), _meta(2))
    monkeypatch.undo()
    # Assert: still v1; the orphan folder of v2 is cleaned by the next save
    current = store.current()
    assert current is not None and current.version == 1
    store.save(_weights(), _meta(3))
    assert sorted(p.name for p in store.root.iterdir() if p.is_dir()) == [
        "000001-digits-v1",
        "000002-digits-v3",
    ]


def test_model_store_rejects_mismatched_class_names(tmp_path: Path) -> None:
    # Execute / Assert
    with pytest.raises(ModelStoreError, match="3 classes but meta names 2"):
        ModelStore(tmp_path).save(_weights(), _meta(1, num_classes=2))
    assert ModelStore(tmp_path).current() is None


def test_model_store_reports_corrupt_state(tmp_path: Path) -> None:
    # Prepare
    store = ModelStore(tmp_path)
    store.save(_weights(), _meta(1))
    (store.root / "state.json").write_text("{", encoding="utf-8")
    # Execute / Assert
    with pytest.raises(ModelStoreError, match="unreadable model store state"):
        store.current()
