"""builder.features.sources.task_sources: device classes run their ONNX export."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from builder.features.sources import FeatureSource, task_sources


@dataclass(frozen=True)
class _Made:
    """A FeatureSource stand-in that remembers how it was asked for."""

    spec: str
    backend: str

    @property
    def id(self) -> str:
        return self.spec

    def corpus_features(self, corpus: object) -> np.ndarray:
        raise AssertionError("not used")

    def image_features(self, images: object) -> np.ndarray:
        raise AssertionError("not used")


def _make(spec: str, backend: str) -> FeatureSource:
    return _Made(spec, backend)


def test_device_classes_run_their_onnx_export_even_for_float_specs() -> None:
    # Execute: the demo's classes (an int8 and a float encoder) and default teachers
    devices, teachers = task_sources(
        devices=["lite0-64-int8", "lite1-96"],
        teachers=["lite1-96", "lite0-64-int8"],
        teacher_backend="onnx",
        make=_make,
    )
    # Assert: never backend auto (torch for lite1-96); teachers share the device sources
    assert {spec: s.backend for spec, s in devices.items()} == {  # type: ignore[attr-defined]
        "lite0-64-int8": "onnx",
        "lite1-96": "onnx",
    }
    assert teachers[0] is devices["lite1-96"] and teachers[1] is devices["lite0-64-int8"]


def test_a_torch_teacher_gets_its_own_source() -> None:
    # Execute
    devices, teachers = task_sources(
        devices=["lite1-96"], teachers=["lite1-96"], teacher_backend="torch", make=_make
    )
    # Assert
    assert teachers[0] is not devices["lite1-96"]
    assert teachers[0].backend == "torch"  # type: ignore[attr-defined]
