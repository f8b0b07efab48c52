"""Progress bars (tqdm, on stderr) for the build stages that report (stage, done, total)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.features.sources import FeatureSource
    from builder.pipeline.build import BuildResult
    from builder.pipeline.config import TaskConfig
    from builder.pipeline.targets import TargetTask
    from plada.corpus import Corpus
    from plada.signing import SigningKey


class ProgressBars:
    def __init__(self, *, enabled: bool = True) -> None:
        self._enabled = enabled
        self._bars: dict[str, Any] = {}

    def update(self, stage: str, done: int, total: int) -> None:
        if not self._enabled:
            return
        bar = self._bars.get(stage)
        if bar is None:
            from tqdm import tqdm

            bar = self._bars[stage] = tqdm(total=total, desc=stage, unit="head", leave=False)
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_with_progress(
    corpus: Corpus,
    task: TargetTask,
    *,
    teacher_sources: Sequence[FeatureSource],
    device_sources: Mapping[str, FeatureSource],
    signing_key: SigningKey,
    config: TaskConfig,
    enabled: bool,
) -> BuildResult:
    """builder.pipeline.build.build_task_multi with a bar per stage that reports progress."""
    from builder.pipeline.build import build_task_multi

    with ProgressBars(enabled=enabled) as bars:
        return build_task_multi(
            corpus,
            task,
            teacher_sources=teacher_sources,
            device_sources=device_sources,
            signing_key=signing_key,
            config=config,
            progress=bars.update,
        )
