"""Where the pipeline's features come from: a FeatureSource per encoder, and one task's features.

The stages run on any FeatureSource: the real encoders (EncoderFeatures: the corpus from the
embedding cache, target images embedded in batches) or, in unit tests and the benchmarks'
workers, features computed before.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from builder.errors import BuilderError
from plada.views import View, apply_view_all


class CorpusImages(Protocol):
    """What a FeatureSource reads from a corpus (plada.corpus.Corpus, or a ViewedCorpus)."""

    @property
    def fingerprint(self) -> str: ...

    def __len__(self) -> int: ...

    def images(self, indices: Sequence[int]) -> list[Image.Image]: ...


class FeatureSource(Protocol):
    """An encoder as the pipeline sees it: corpus features (cached) and features of images."""

    @property
    def id(self) -> str: ...

    def corpus_features(self, corpus: CorpusImages) -> np.ndarray:  # (N, D) float32
        ...

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:  # (B, D) float32
        ...


@dataclass(frozen=True)
class TaskImages:
    """The target's two splits, decoded."""

    train: Sequence[Image.Image]
    test: Sequence[Image.Image]


class _Deferred:
    """An array computed on first use and remembered (shared by the copies that hold it)."""

    def __init__(self, value: np.ndarray | Callable[[], np.ndarray]) -> None:
        self._state = value  # the maker until first use, then the array (the maker let go)

    @property
    def ready(self) -> bool:
        return isinstance(self._state, np.ndarray)

    def get(self) -> np.ndarray:
        state = self._state
        if isinstance(state, np.ndarray):
            return state
        value = state()
        self._state = value  # drops the maker and what it held (the decoded test images)
        return value


class TaskFeatures:
    """Features of one encoder: the whole corpus and the target's two splits.

    The test split's features may be given as a function: only the stages after the choice
    (simulation, leakage, the report) read them, so they are computed on first use and
    remembered. A teacher that loses the choice at validation then never embeds the test split
    (fashion: 7,758 images, most of a warm two-teacher build's embedding time)."""

    __slots__ = ("_test", "encoder", "reference", "train")

    def __init__(
        self,
        encoder: str,
        reference: np.ndarray,  # (N, D)
        train: np.ndarray,  # (n_train, D)
        test: np.ndarray | Callable[[], np.ndarray],  # (n_test, D), or what makes it
    ) -> None:
        self.encoder = encoder
        self.reference = reference
        self.train = train
        self._test = _Deferred(test)

    @property
    def test(self) -> np.ndarray:
        """(n_test, D): computed now if it was deferred and not asked for before."""
        return self._test.get()

    @property
    def test_ready(self) -> bool:
        """Whether the test split's features exist yet (deferred ones may never be made)."""
        return self._test.ready

    def with_reference(self, reference: np.ndarray) -> TaskFeatures:
        """The same target features (the deferred test split shared, made at most once) over
        other corpus features."""
        out = copy.copy(self)  # shares the _Deferred, so the test split is made once
        out.reference = reference
        return out


def make_test_features(features: Iterable[TaskFeatures]) -> None:
    """Compute the deferred test-split features of these encoders now (the builder times this
    as feature extraction, not as the first stage that reads them)."""
    for feats in features:
        feats.test  # noqa: B018 (the property computes and remembers them)


def extract_features(
    source: FeatureSource, corpus: CorpusImages, images: TaskImages
) -> TaskFeatures:
    """The features stage for one encoder: the corpus (cached) and the train split now, the
    test split when a later stage first asks for it."""
    reference = source.corpus_features(corpus)
    if reference.shape[0] != len(corpus):
        raise BuilderError(
            f"encoder {source.id}: {reference.shape[0]} features for {len(corpus)} corpus images"
        )
    test_images = images.test
    return TaskFeatures(
        encoder=source.id,
        reference=reference,
        train=source.image_features(images.train),
        test=lambda: source.image_features(test_images),
    )


def images_digest(images: Sequence[Image.Image]) -> str:
    """What a list of images is, for memoising its features: modes, sizes and pixels."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(f"{image.mode}{image.size}".encode())
        digest.update(image.tobytes())
    return f"images:{digest.hexdigest()}"


class EncoderFeatures:
    """A FeatureSource over a real encoder: corpus features from the embedding cache (computed
    once per corpus and encoder), target images embedded in batches, memoised in memory (several
    budgets or seeds of one task in one process) and kept on disk (later builds)."""

    def __init__(
        self,
        spec: str,
        *,
        cache_root: Path,
        encoder_dir: Path | None = None,
        batch_size: int = 256,
        progress: bool = True,
        backend: str = "auto",
    ) -> None:
        self._spec = spec
        self._backend = backend
        self._cache_root = Path(cache_root)
        self._encoder_dir = encoder_dir
        self._batch_size = batch_size
        self._progress = progress
        self._encoder: Any = None
        self._memo: dict[str, np.ndarray] = {}
        self.images_embedded = 0  # target images this source ran its encoder on (not cached)

    @property
    def id(self) -> str:
        return self._spec

    def _get_encoder(self) -> Any:
        if self._encoder is None:
            from builder.encoders.load import load_encoder

            self._encoder = load_encoder(
                self._spec, encoder_dir=self._encoder_dir, backend=self._backend
            )
        return self._encoder

    def corpus_features(self, corpus: CorpusImages) -> np.ndarray:
        key = f"corpus:{corpus.fingerprint}"
        if key not in self._memo:
            from builder.features.embed import embed_corpus

            self._memo[key] = embed_corpus(
                corpus,
                self._get_encoder(),
                cache_root=self._cache_root,
                batch_size=self._batch_size,
                progress=self._progress,
            )
        return self._memo[key]

    def image_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Memoised in memory and kept on disk under the cache root (image_cache.py), keyed by
        the images' content and the encoder's cache key: a second build of a task reads its
        splits' features instead of embedding them."""
        key = images_digest(images)
        if key not in self._memo:
            from builder.features.embed import embed_images
            from builder.features.image_cache import cached_image_features

            encoder = self._get_encoder()
            self._memo[key], hit = cached_image_features(
                self._cache_root,
                encoder_key=encoder.cache_key,
                digest=key,
                rows=len(images),
                feature_dim=encoder.feature_dim,
                embed=lambda: embed_images(images, encoder, batch_size=self._batch_size),
            )
            self.images_embedded += 0 if hit else len(images)
        return self._memo[key]


class ViewedCorpus:
    """A corpus as a view shows it: the same images in the same order, each through the view.

    Its fingerprint is derived from the corpus's and the view's digest, so every cache keyed by
    fingerprint (the embedding cache, EncoderFeatures' memo) keeps viewed features apart."""

    def __init__(self, corpus: CorpusImages, view: View) -> None:
        self.base = corpus
        self.view = view
        tag = f"{corpus.fingerprint}:view:{view.digest}".encode()
        self.fingerprint = hashlib.sha256(tag).hexdigest()

    def __len__(self) -> int:
        return len(self.base)

    def images(self, indices: Sequence[int]) -> list[Image.Image]:
        return apply_view_all(self.view, self.base.images(indices))


def viewed_features(
    source: FeatureSource, corpus: CorpusImages, view: View, unviewed: TaskFeatures
) -> TaskFeatures:
    """`unviewed` with the corpus features replaced by those under `view`: a view changes only
    how the reference images look; the target's images are what they are."""
    reference = source.corpus_features(ViewedCorpus(corpus, view))
    if reference.shape[0] != len(corpus):
        raise BuilderError(
            f"encoder {source.id}: {reference.shape[0]} viewed features for {len(corpus)} images"
        )
    return unviewed.with_reference(reference)


def split_specs(text: str) -> list[str]:
    """`lite1-96, lite0-64-int8` -> ["lite1-96", "lite0-64-int8"] (the CLIs' encoder lists)."""
    return [spec.strip() for spec in text.split(",") if spec.strip()]


def task_sources(
    *,
    devices: Sequence[str],
    teachers: Sequence[str],
    teacher_backend: str,
    make: Callable[[str, str], FeatureSource],
) -> tuple[dict[str, FeatureSource], list[FeatureSource]]:
    """(device class -> source, teacher sources). A teacher on a device class's encoder shares
    its source (and so its memoised features) unless it must run on torch.

    A device class runs its ONNX export (also a float one, e.g. x86-dev's `lite1-96.onnx`), so
    its source is that export: backend `auto` would pick torch for a float spec, simulate the
    class with other features and, in the cold demo, embed the corpus with torch eager at a
    tenth of ONNX Runtime's speed (bench/notes/embed-profile.md)."""
    device_sources = {spec: make(spec, "onnx") for spec in devices}
    teacher_sources = [
        device_sources[spec]
        if spec in device_sources and teacher_backend in ("auto", "onnx")
        else make(spec, teacher_backend)
        for spec in teachers
    ]
    return device_sources, teacher_sources
