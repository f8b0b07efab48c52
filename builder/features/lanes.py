"""Embedding lanes: the blocks to embed split between several ONNX Runtime sessions, each with
few intra-op threads and its own decode thread (plada/prefetch.py), run side by side.

Measured on the 2-core machine (16,384 ref-v1 images, idle, the demo's exports): one session with
ORT's default two threads ran Lite1-96 at 645-703 img/s and Lite0-64-int8 at 2,600-2,750; two
one-thread lanes ran 801-813 and 3,200-3,400 img/s (1.2x) on less CPU time (39 vs 44-48 s for
Lite1-96), with the same features. A session's intra-op threads meet at every operator of each
32-row run; separate sessions never wait for each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from builder.encoders.load import Encoder
from plada.ordered_pool import available_cores

MAX_LANES = 4  # past this, each lane's sessions and decode buffers cost more than they return


def lane_encoders(encoder: Encoder, blocks: int, *, cores: int | None = None) -> list[Encoder]:
    """Sessions to embed ``blocks`` blocks with: one per lane. Only an ONNX encoder whose thread
    count nobody chose is split (``--threads`` keeps its one session); torch runs alone."""
    from builder.encoders.onnx_encoder import OnnxEncoder

    cores = available_cores() if cores is None else cores
    count = min(cores, MAX_LANES, blocks)
    if count <= 1 or not isinstance(encoder, OnnxEncoder) or encoder.threads is not None:
        return [encoder]
    threads = max(1, cores // count)
    return [encoder.with_threads(threads) for _ in range(count)]


def split_contiguous(items: Sequence[int], parts: int) -> list[list[int]]:
    """``items`` in ``parts`` contiguous runs of near-equal length (each lane reads its own
    stretch of the corpus's shards)."""
    n = len(items)
    return [list(items[i * n // parts : (i + 1) * n // parts]) for i in range(parts)]
