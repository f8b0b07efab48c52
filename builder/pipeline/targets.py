"""A target task in ImageFolder layout: `<root>/{train,test}/<class>/<image>`.

Class names are the train split's folder names, sorted; the test split may hold a subset of them.
Errors name the folder or file at fault: a missing split, a class folder without images, a test
class unknown to train, an image Pillow cannot read.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from builder.errors import TargetError
from plada.files import IMAGE_SUFFIXES, is_image_file

_TASK_NAME_RE = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class TargetSplit:
    """Image paths and their class indices (into TargetTask.class_names)."""

    paths: tuple[Path, ...]
    labels: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.paths)


@dataclass(frozen=True)
class TargetTask:
    name: str
    root: Path
    class_names: tuple[str, ...]
    train: TargetSplit
    test: TargetSplit

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def task_name_from(path: Path) -> str:
    """A payload-safe task name ([a-z0-9_-]{1,64}) from a folder name."""
    name = _TASK_NAME_RE.sub("-", path.resolve().name.lower()).strip("-")[:64]
    return name or "task"


def _class_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if is_image_file(p))


def _load_split(
    split_dir: Path, *, class_names: Sequence[str] | None
) -> tuple[tuple[str, ...], TargetSplit]:
    if not split_dir.is_dir():
        raise TargetError(f"target split folder missing: {split_dir}")
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise TargetError(f"no class folders in {split_dir}")
    names = tuple(p.name for p in folders)
    if class_names is None:
        if len(names) < 2:
            raise TargetError(f"{split_dir} has {len(names)} class folder; a task needs at least 2")
        class_names = names
    index = {name: i for i, name in enumerate(class_names)}
    paths: list[Path] = []
    labels: list[int] = []
    for folder in folders:
        if folder.name not in index:
            raise TargetError(f"class folder {folder} is not a class of the train split")
        images = _class_images(folder)
        if not images:
            raise TargetError(f"class folder {folder} has no images ({', '.join(IMAGE_SUFFIXES)})")
        paths.extend(images)
        labels.extend([index[folder.name]] * len(images))
    return tuple(class_names), TargetSplit(tuple(paths), np.asarray(labels, dtype=np.int64))


def load_target(root: Path) -> TargetTask:
    """Read the folder structure (not the pixels) of a target task."""
    root = Path(root)
    if not root.is_dir():
        raise TargetError(f"target folder not found: {root}")
    class_names, train = _load_split(root / "train", class_names=None)
    _, test = _load_split(root / "test", class_names=class_names)
    return TargetTask(task_name_from(root), root, class_names, train, test)


def read_image(path: Path) -> Image.Image:
    """Decode one image fully, or raise TargetError naming the file."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise TargetError(f"unreadable image {path}: {exc}") from exc


def read_images(paths: Sequence[Path]) -> list[Image.Image]:
    return [read_image(p) for p in paths]
