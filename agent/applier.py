"""The daemon's real applier (agent.pipeline), its idle cache warming, and the probe set.

A probe folder is a labelled ImageFolder (root/<class>/<image>) whose accuracy each result
reports. Images go through plada.images (the decode bound shared by every image reader); one that
cannot be read is skipped, named in the log and counted in the result, never fatal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.ports import ProbeResult
from plada.errors import ImageError
from plada.files import is_image_file

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from agent.models import ModelStore
    from agent.pipeline import VerifiedPayload
    from agent.ports import Applied, ProgressFn

logger = logging.getLogger(__name__)


_PROBE_MAX_IMAGES = 5000
_PROBE_BATCH = 256


class PipelineApplier:
    """The real applier: agent.pipeline (corpus check, features, train, store)."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._cache: Any = None

    def apply(
        self, verified: VerifiedPayload, *, store: ModelStore, progress: ProgressFn
    ) -> Applied:
        from agent.pipeline import install_payload

        return install_payload(verified, config=self.config, store=store, progress=progress)

    def warm_step(self, should_stop: Callable[[], bool]) -> bool:
        """Idle work: embed a little more of the corpus; False once nothing is left to do."""
        from agent.pipeline import open_corpus, open_feature_cache

        if self._cache is None:
            self._cache = open_feature_cache(self.config, open_corpus(self.config))
        if self._cache.is_complete():
            self._cache = None  # release the encoder session
            return False
        report = self._cache.warm(should_stop=should_stop)
        if report.blocks_computed:
            logger.info(
                "idle: embedded %d corpus images into the feature cache", report.images_embedded
            )
        return True

    def watch_paths(self) -> list[Path]:
        """Files whose change may cure a device fault (corpus, encoder): the daemon retries when
        one of them changes."""
        corpus = self.config.corpus.path
        shards = sorted((corpus / "shards").glob("*")) if (corpus / "shards").is_dir() else []
        encoder = self.config.encoder.file
        return [corpus / "corpus.json", *shards, encoder, encoder.with_suffix(".json")]

    def evaluate_probe(self, task: str) -> ProbeResult | None:
        """Top-1 accuracy of `task`'s head on `mqtt.probe_dir`, over the head's classes (class
        folders of other tasks are not scored)."""
        root = self.config.mqtt.probe_dir
        if root is None:
            return None
        from agent.predict import Predictor
        from plada.images import decode_image

        predictor = Predictor.from_config(self.config, task=task)
        names = {name: i for i, name in enumerate(predictor.class_names)}
        files = _probe_files(root, names)
        correct = scored = skipped = 0
        for start in range(0, len(files), _PROBE_BATCH):
            images, labels = [], []
            for path, label in files[start : start + _PROBE_BATCH]:
                try:
                    images.append(decode_image(path))
                except ImageError as exc:
                    logger.warning("probe image skipped: %s", exc)
                    skipped += 1
                    continue
                labels.append(label)
            if not images:
                continue
            predicted = predictor.predict_proba(images).argmax(axis=1)  # (B,)
            correct += int(sum(int(p) == y for p, y in zip(predicted, labels, strict=True)))
            scored += len(images)
        if not files:
            logger.warning("probe folder %s has no images of the task's classes", root)
        return ProbeResult(correct / scored if scored else None, scored, skipped)


def _probe_files(root: Path, names: dict[str, int]) -> list[tuple[Path, int]]:
    files: list[tuple[Path, int]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name in names):
        files += [(f, names[folder.name]) for f in sorted(folder.iterdir()) if is_image_file(f)]
    return files[:_PROBE_MAX_IMAGES]
