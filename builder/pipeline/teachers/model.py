"""What the rest of the builder needs from a teacher, whatever its kind: logits and classes of
features, and the numbers the report names it by."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TeacherModel(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def l2(self) -> float: ...

    @property
    def num_classes(self) -> int: ...

    def logits(self, features: np.ndarray) -> np.ndarray:  # (N, D) -> (N, C) float32
        ...

    def predict(self, features: np.ndarray) -> np.ndarray:  # (N,) int64
        ...
