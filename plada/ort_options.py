"""ONNX Runtime session settings both sides use (the values only: plada imports no onnxruntime).

Measured on the 2-core machine of issue 18, shared with other jobs (bench/notes/embed-profile.md):
- ORT's intra-op threads spin after each parallel section by default. When the cores are shared
  (other builds, the decode thread of the embedding pipeline, agents beside other services) the
  spinning threads burn the time slices the others need: Lite1-96 at batch 32 ran 261 img/s
  spinning and 701 img/s with spinning off.
- One `run` over many rows is slower than several smaller ones: at 256 rows of 96 px the
  activations no longer fit in cache (and the arena grows to ~1 GB); 16-64 rows ran 1.5-4x
  faster than 256 for Lite0-64-int8 and Lite1-96.
"""

from __future__ import annotations

from typing import Protocol

# session config entries (onnxruntime_session_options_config_keys.h)
SESSION_CONFIG: dict[str, str] = {"session.intra_op.allow_spinning": "0"}
# rows per InferenceSession.run: small enough for the activations to stay in cache
RUN_ROWS = 32


class _Options(Protocol):
    def add_session_config_entry(self, key: str, value: str) -> None: ...


def configure(options: _Options) -> None:
    """Apply SESSION_CONFIG to an `onnxruntime.SessionOptions`."""
    for key, value in SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
