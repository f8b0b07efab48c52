"""bench.fleet_unvalidated: fleet payloads applied to the classes their build did not validate."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from bench import fleet_unvalidated
from bench._common import BenchContext
from bench.fleet_choice import LITE_CLASSES
from bench.schema.fleet_targets import FleetClassRow


def _features(labels: np.ndarray, seed: int) -> np.ndarray:
    """(N, 4) features whose first column tells the two classes apart."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(len(labels), 4)).astype(np.float32)
    x[:, 0] += 10.0 * (2 * labels - 1)
    return x


def _context(tmp_path: Path) -> BenchContext:
    ctx = BenchContext(data=tmp_path, work=tmp_path / "work", out=tmp_path / "out")
    labels = SimpleNamespace(labels=np.tile([0, 1], 20))
    ctx._targets["digits"] = SimpleNamespace(num_classes=2, train=labels, test=labels)
    return ctx


def _builds(tmp_path: Path) -> list[tuple[dict[str, Any], Path]]:
    out: list[tuple[dict[str, Any], Path]] = []
    for budget in ("2KiB", "8KiB"):
        path = tmp_path / f"digits-{budget}.plada"
        path.write_bytes(b"x" * 100)
        out.append(({"task": "digits", "budget": budget, "seed": 0, "classes": {}}, path))
    return out


def test_payloads_are_applied_under_their_view_at_the_class_budgets_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: a payload that keeps 20 reference images with their true labels, under view "V"
    ctx = _context(tmp_path)
    kept_labels = np.tile([0, 1], 10)
    payload = SimpleNamespace(
        indices=np.arange(20),
        labels=kept_labels,
        view="V",
        provenance=SimpleNamespace(strategy="s"),
    )
    monkeypatch.setattr(fleet_unvalidated, "verified_payload", lambda ctx, path: payload)
    task_labels = ctx.target("digits").train.labels
    monkeypatch.setattr(
        fleet_unvalidated,
        "class_features",
        lambda ctx, name, spec, rows: (_features(task_labels, 1), _features(task_labels[rows], 2)),
    )
    asked: list[tuple[str, Any]] = []

    def reference_rows(spec: str, indices: Any, view: Any = None) -> np.ndarray:
        asked.append((spec, view))
        return _features(kept_labels[np.asarray(indices)], 3)

    ctx.reference_rows = reference_rows  # type: ignore[method-assign]
    builds = _builds(tmp_path)
    # Execute
    errors = fleet_unvalidated.apply_unvalidated(
        ctx, "digits", builds, validated=LITE_CLASSES.split(",")
    )
    # Assert: the ResNet-50 runs at 2 KiB only (bench.hetero's limit), under the payload's view
    assert errors == {}
    assert asked == [("opennsfw-224", "V")]
    two, eight = (row for row, _ in builds)
    assert "opennsfw-224" not in eight["classes"]
    entry = FleetClassRow.model_validate(two["classes"]["opennsfw-224"])
    assert entry.val_ratio is None and entry.test_accuracy > 0.8  # the labels taught it
    assert entry.test_ratio == pytest.approx(entry.test_accuracy / (entry.oracle_accuracy or 1))


def test_a_class_that_cannot_be_loaded_is_named_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing(*_: Any) -> Any:
        raise FileNotFoundError("no opennsfw-224 weights under ~/.cache")

    payload = SimpleNamespace(indices=np.arange(2), labels=np.arange(2), view=None)
    monkeypatch.setattr(fleet_unvalidated, "verified_payload", lambda ctx, path: payload)
    monkeypatch.setattr(fleet_unvalidated, "class_features", missing)
    builds = _builds(tmp_path)
    errors = fleet_unvalidated.apply_unvalidated(
        _context(tmp_path), "digits", builds, validated=LITE_CLASSES.split(",")
    )
    assert errors == {
        "opennsfw-224": "digits: FileNotFoundError: no opennsfw-224 weights under ~/.cache"
    }
    assert all(row["classes"] == {} for row, _ in builds)


def test_a_payload_that_does_not_verify_is_named_and_nothing_else_is_lost(tmp_path: Path) -> None:
    # Prepare: payload files of 100 junk bytes, signed by nobody
    ctx = _context(tmp_path)
    builds = _builds(tmp_path)
    # Execute
    errors = fleet_unvalidated.apply_unvalidated(
        ctx, "digits", builds, validated=LITE_CLASSES.split(",")
    )
    # Assert: reported for the class and task, no row touched, no exception
    assert list(errors) == ["opennsfw-224"] and errors["opennsfw-224"].startswith("digits: ")
    assert all(row["classes"] == {} for row, _ in builds)
