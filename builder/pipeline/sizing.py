"""The byte search: the largest keep count whose signed payload fits a byte budget.

A payload's size is that of its envelope, which `plada.payload.envelope_size` computes exactly
from a codec's output without signing (an Ed25519 signature is always 64 bytes). PayloadSizer
runs each codec at most once per selection and remembers the result, so a selection measured by
the search and again as a candidate costs one encoding.

The search (`largest_fitting`) probes with the fast codecs only: their best is an upper bound of
the best over every codec, and the slow ANS coders take 0.1-0.3 s per call (the profile of a
2 KiB build here: 7.8 s of 31 s went to encoding every codec at every probe). At the keep it
finds, every codec runs once; if a slow one wins, the keep grows in a few steps measured with
that codec alone (again an upper bound). The payload is then encoded with the codec that gave
its size, so the signed bytes never exceed what was checked against the budget.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from builder.errors import BudgetError
from builder.pipeline.payload import PayloadFields
from builder.pipeline.select import Selection
from plada.codecs import CODECS
from plada.payload import envelope_size

# Codecs that encode a few thousand indices in milliseconds.
FAST_CODECS = tuple(
    name for name in ("paper", "rice", "gamma-class", "gamma-runs") if name in CODECS
)
# Sizes are measured with a float64 accuracy estimate (CBOR's longest float), so the final
# payload, whatever its estimate, is never larger than the size that was checked.
SIZE_PROBE_ACCURACY = 0.123456789012345


class PayloadSizer:
    """Exact signed payload sizes of selections, per codec, each codec run once per selection.
    Safe to share between threads (the candidates stage sizes its settings side by side)."""

    def __init__(self, fields: PayloadFields, *, key_id: str | None) -> None:
        self._fields = fields
        self._key_id = key_id
        self._sizes: dict[tuple[bytes, str], int] = {}
        self._lock = threading.Lock()  # guards the counts; sizes are only ever set to one value
        self.codec_runs: Counter[str] = Counter()  # encodings per codec (the costly part)

    def sizes(self, selection: Selection, codecs: Iterable[str]) -> dict[str, int]:
        """{codec: size of the signed envelope with that codec}."""
        key = _selection_key(selection)
        payload = None
        out = {}
        for codec in codecs:
            if (key, codec) not in self._sizes:
                if payload is None:
                    payload = self._fields.payload(selection, accuracy_estimate=SIZE_PROBE_ACCURACY)
                data = CODECS[codec].encode(
                    selection.indices,
                    selection.labels,
                    n=self._fields.corpus.size,
                    num_classes=len(self._fields.class_names),
                )
                size = envelope_size(payload, codec=codec, data=data, key_id=self._key_id)
                with self._lock:
                    self.codec_runs[codec] += 1
                    self._sizes[key, codec] = size
            out[codec] = self._sizes[key, codec]
        return out

    def best(self, selection: Selection, codecs: Sequence[str] | None = None) -> tuple[int, str]:
        """(smallest size, its codec) over `codecs` (default: every codec)."""
        sizes = self.sizes(selection, CODECS if codecs is None else codecs)
        codec = min(sizes, key=lambda name: (sizes[name], name))
        return sizes[codec], codec

    def size(self, selection: Selection, codecs: Sequence[str] | None = None) -> int:
        return self.best(selection, codecs)[0]


def _selection_key(selection: Selection) -> bytes:
    digest = hashlib.blake2b(selection.indices.tobytes(), digest_size=16)
    digest.update(selection.labels.tobytes())
    return digest.digest()


def largest_fitting(
    make: Callable[[int], Selection],
    sizer: PayloadSizer,
    *,
    max_bytes: int,
    min_keep: int,
    max_keep: int,
) -> Selection:
    """The selection with (about) the largest keep in [min_keep, max_keep] that fits max_bytes
    with the best codec (module docstring)."""
    top, _ = fit_to_bytes(
        make,
        lambda s: sizer.size(s, FAST_CODECS),
        max_bytes=max_bytes,
        min_keep=min_keep,
        max_keep=max_keep,
    )
    _, codec = sizer.best(top)
    if codec in FAST_CODECS:  # the search already measured with the winning codec
        return top
    grown, _ = refine_upward(
        make, lambda s: sizer.size(s, [codec]), start=top, max_bytes=max_bytes, max_keep=max_keep
    )
    return grown


def fit_to_bytes(
    make: Callable[[int], Selection],
    size_of: Callable[[Selection], int],
    *,
    max_bytes: int,
    min_keep: int,
    max_keep: int,
    rel_tol: float = 0.005,
) -> tuple[Selection, int]:
    """The selection with (within rel_tol) the largest keep in [min_keep, max_keep] whose payload
    is <= max_bytes.

    Payload size grows with keep almost linearly (and almost monotonically: it is compressed), so
    the boundary is bracketed by interpolating between the last fitting and the last too-large
    keep, guarded towards bisection: 4-8 size measurements instead of a bisection's 14. Only
    selections that were measured to fit are returned.
    """
    smallest = make(min_keep)
    smallest_size = size_of(smallest)
    if smallest_size > max_bytes:
        raise BudgetError(
            f"budget of {max_bytes} bytes is too small: keeping {min_keep} images (one per class) "
            f"already takes {smallest_size} bytes"
        )
    best, best_size = smallest, smallest_size
    lo, s_lo = min_keep, smallest_size  # lo fits
    hi, s_hi = max_keep + 1, None  # hi does not fit (or is past the end)
    while hi - lo > max(1, int(lo * rel_tol)):
        if s_hi is None:
            per_image = max(s_lo / lo, 1e-3)  # overestimates (overhead included): undershoots
            guess = lo + (max_bytes - s_lo) / per_image
        else:
            guess = lo + (hi - lo) * (max_bytes - s_lo) / max(s_hi - s_lo, 1)
        # Guard towards bisection once bracketed; before that, step at least 1 % past lo.
        margin = max(1, (hi - lo) // 8) if s_hi is not None else max(1, lo // 100)
        keep = int(min(max(guess, lo + margin), hi - 1 if s_hi is None else hi - margin))
        if keep <= lo or keep >= hi:
            keep = (lo + hi) // 2
        candidate = make(keep)
        size = size_of(candidate)
        if size <= max_bytes:
            lo, s_lo, best, best_size = keep, size, candidate, size
        else:
            hi, s_hi = keep, size
    return best, best_size


def refine_upward(
    make: Callable[[int], Selection],
    size_of: Callable[[Selection], int],
    *,
    start: Selection,
    max_bytes: int,
    max_keep: int,
    factors: tuple[float, ...] = (1.03, 1.06, 1.12),
) -> tuple[Selection, int]:
    """Grow a fitting selection by a few factors, measured with the exact size function.

    `fit_to_bytes` can search with a cheap size that bounds the exact one from above (a subset of
    the payload codecs); the exact size is then a few percent smaller, so the keep count can grow
    a little. Returns the largest tried selection that fits (`start` itself if none does)."""
    best, best_size = start, size_of(start)
    if best_size > max_bytes:
        raise BudgetError(
            f"selection of {start.keep} images takes {best_size} bytes, over the {max_bytes} budget"
        )
    for factor in factors:
        keep = min(max_keep, int(start.keep * factor))
        if keep <= best.keep:
            continue
        candidate = make(keep)
        size = size_of(candidate)
        if size > max_bytes:
            break
        best, best_size = candidate, size
    return best, best_size


def check_budget_fits(fields: PayloadFields, *, max_bytes: int | None, key_id: str | None) -> None:
    """Refuse at once a byte budget no signed envelope fits in: the smallest payload this task can
    have (one image per class, no strategy or parameters) is already larger. Checked before any
    target image is read or the corpus embedded."""
    if max_bytes is None:
        return
    k = len(fields.class_names)
    smallest = Selection(np.arange(k, dtype=np.int64), np.arange(k, dtype=np.int64), strategy="")
    size = PayloadSizer(fields, key_id=key_id).size(smallest)
    if size > max_bytes:
        raise BudgetError(
            f"budget {max_bytes} B is too small: the smallest signed payload of task "
            f"{fields.task!r} ({k} class names, corpus reference, signature, one image per "
            f"class) is {size} bytes"
        )
