"""Codecs for the selection, the (index, label) set a payload carries. The encoder tries them all.

| name          | idea                                                              |
| ------------- | ----------------------------------------------------------------- |
| `paper`       | the paper's baseline: delta in the smallest uint / bitmap + Zstd 19 |
| `rice`        | per-class gap lists, Golomb-Rice                                  |
| `gamma-class` | per-class gap lists, Elias-gamma bit lengths through Zstd          |
| `gamma-runs`  | global gaps + label runs, Elias-gamma bit lengths through Zstd     |
| `ans-class`   | per-class gap lists, context-modelled (order 0/1) rANS             |
| `ans-runs`    | global gaps + label runs, context-modelled rANS                    |

Every codec gets validated input and must reproduce it exactly; `decode_selection` validates what a
codec returns again (sorted, unique, < N, labels < C) so a codec bug cannot let bad indices through.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from plada.codecs.ans import AnsClassCodec, AnsRunsCodec
from plada.codecs.base import Codec
from plada.codecs.gamma import GammaClassCodec, GammaRunsCodec
from plada.codecs.paper import PaperCodec
from plada.codecs.rice import RiceCodec
from plada.errors import PayloadDecodeError, PayloadValueError

__all__ = ["CODECS", "Codec", "check_selection", "decode_selection", "encode_selection"]

CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        PaperCodec(),
        RiceCodec(),
        GammaClassCodec(),
        GammaRunsCodec(),
        AnsClassCodec(),
        AnsRunsCodec(),
    )
}


def check_selection(indices: np.ndarray, labels: np.ndarray, *, n: int, num_classes: int) -> None:
    """Raise PayloadValueError unless indices are sorted, unique, in [0, n) and labels in [0, C)."""
    if indices.ndim != 1 or labels.ndim != 1 or len(indices) != len(labels):
        raise PayloadValueError(
            f"selection: indices {indices.shape} and labels {labels.shape} must be equal-length 1-D"
        )
    if len(indices) == 0:
        return
    if not (np.issubdtype(indices.dtype, np.integer) and np.issubdtype(labels.dtype, np.integer)):
        raise PayloadValueError("selection: indices and labels must be integer arrays")
    steps = np.diff(indices)
    if len(steps) and int(steps.min()) <= 0:
        at = int(np.flatnonzero(steps <= 0)[0]) + 1
        problem = "duplicate" if steps[at - 1] == 0 else "not sorted"
        raise PayloadValueError(f"selection.indices[{at}] = {int(indices[at])}: {problem}")
    if int(indices[0]) < 0:
        raise PayloadValueError(f"selection.indices[0] = {int(indices[0])} is negative")
    if int(indices[-1]) >= n:
        at = int(np.flatnonzero(indices >= n)[0])
        raise PayloadValueError(
            f"selection.indices[{at}] = {int(indices[at])} is out of range for corpus size {n}"
        )
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        at = int(bad[0])
        raise PayloadValueError(
            f"selection.labels[{at}] = {int(labels[at])} is out of range for {num_classes} classes"
        )


def encode_selection(
    indices: np.ndarray,
    labels: np.ndarray,
    *,
    n: int,
    num_classes: int,
    codecs: Sequence[str] | None = None,
) -> tuple[str, bytes]:
    """Encode with every codec in `codecs` (default: all) and keep the smallest: (name, bytes)."""
    indices = np.asarray(indices, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    check_selection(indices, labels, n=n, num_classes=num_classes)
    names = list(CODECS) if codecs is None else list(codecs)
    unknown = [name for name in names if name not in CODECS]
    if unknown or not names:
        raise PayloadValueError(
            f"selection.codec: unknown codec(s) {unknown}; known {list(CODECS)}"
        )
    best: tuple[str, bytes] | None = None
    for name in names:
        data = CODECS[name].encode(indices, labels, n=n, num_classes=num_classes)
        if best is None or len(data) < len(best[1]):
            best = (name, data)
    if best is None:  # pragma: no cover - names is non-empty
        raise PayloadValueError("selection.codec: no codec chosen")
    return best


def decode_selection(
    codec: str, data: bytes, *, n: int, num_classes: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Decode and validate; raises PayloadDecodeError / PayloadValueError naming the field."""
    if codec not in CODECS:
        raise PayloadDecodeError(f"selection.codec: unknown codec {codec!r}; known {list(CODECS)}")
    indices, labels = CODECS[codec].decode(data, n=n, num_classes=num_classes, k=k)
    if len(indices) != k or len(labels) != k:
        raise PayloadDecodeError(
            f"selection.data ({codec}): decoded {len(indices)} indices, header says {k}"
        )
    check_selection(indices, labels, n=n, num_classes=num_classes)
    return indices, labels
