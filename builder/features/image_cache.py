"""Features of a list of images (a task's train or test split) kept on disk, so a second build of
the same task does not embed its images again.

    <cache_root>/images/<encoder cache_key>/<content digest>.npy      (B, D) float32

The key is what decides the features: the images' content (modes, sizes and pixels, in order:
`images_digest`) and the encoder's cache key (backend + id + weights hash). A view is applied to
pixels before they are embedded, so viewed images have another content digest and never share an
entry with the unviewed ones. Measured on fashion: its 7,758 test images took most of a warm
build's 50 s of target embedding with two teachers; a hit is one np.load.

Entries are written atomically, so one that exists is complete; one with the wrong shape or dtype
(another writer's bug, a truncated copy) is logged, embedded again and replaced, because it is
derived data that can always be remade.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from plada.atomic import save_npy_atomic

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def entry_path(cache_root: Path, encoder_key: str, digest: str) -> Path:
    """The file of one (encoder, image list) entry; both parts made file-name safe."""
    return cache_root / IMAGES_DIR / _SAFE.sub("_", encoder_key) / f"{_SAFE.sub('_', digest)}.npy"


def _load(path: Path, *, rows: int, feature_dim: int | None) -> np.ndarray | None:
    """The entry's features, or None when it is absent or not (rows, D) float32."""
    if not path.exists():
        return None
    try:
        array: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        logger.warning("image feature cache %s unreadable (%s): embedding again", path, exc)
        return None
    dim_ok = feature_dim is None or (array.ndim == 2 and array.shape[1] == feature_dim)
    if array.ndim != 2 or array.shape[0] != rows or not dim_ok or array.dtype != np.float32:
        logger.warning(
            "image feature cache %s has %s %s, expected (%d, %s) float32: embedding again",
            path,
            array.shape,
            array.dtype,
            rows,
            feature_dim if feature_dim is not None else "D",
        )
        return None
    return array


def cached_image_features(
    cache_root: Path,
    *,
    encoder_key: str,
    digest: str,
    rows: int,
    feature_dim: int | None,
    embed: Callable[[], np.ndarray],
) -> tuple[np.ndarray, bool]:
    """(features of the image list, whether they came from disk): the cached entry when it is
    there and well-formed, else `embed()`'s result, stored for next time."""
    path = entry_path(cache_root, encoder_key, digest)
    found = _load(path, rows=rows, feature_dim=feature_dim)
    if found is not None:
        return found, True
    features = np.ascontiguousarray(embed(), dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(path, features)
    return features, False
