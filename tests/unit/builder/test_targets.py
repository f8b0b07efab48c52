"""ImageFolder target loading and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builder.errors import TargetError
from builder.pipeline.targets import load_target, read_image, read_images, task_name_from


def _write(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), color=value).save(path)


def _make_task(root: Path) -> None:
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            for i in range(n):
                _write(root / split / cls / f"{i}.png", value=i * 10)


def test_load_target_reads_classes_and_labels(tmp_path: Path) -> None:
    # Prepare
    _make_task(tmp_path / "My Task")
    # Execute
    task = load_target(tmp_path / "My Task")
    # Assert
    assert task.name == "my-task"
    assert task.class_names == ("cat", "dog")
    assert len(task.train) == 6 and len(task.test) == 4
    assert task.train.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert task.test.labels.dtype == np.int64


def test_load_target_rejects_class_folder_without_images(tmp_path: Path) -> None:
    # Prepare
    _make_task(tmp_path / "t")
    (tmp_path / "t" / "train" / "empty").mkdir()
    (tmp_path / "t" / "train" / "empty" / "notes.txt").write_text("x")
    # Execute / Assert
    with pytest.raises(TargetError, match=r"empty.*no images"):
        load_target(tmp_path / "t")


def test_load_target_rejects_unknown_test_class(tmp_path: Path) -> None:
    # Prepare
    _make_task(tmp_path / "t")
    _write(tmp_path / "t" / "test" / "bird" / "0.png")
    # Execute / Assert
    with pytest.raises(TargetError, match=r"bird.*not a class"):
        load_target(tmp_path / "t")


def test_load_target_rejects_missing_split(tmp_path: Path) -> None:
    # Prepare
    _write(tmp_path / "t" / "train" / "a" / "0.png")
    _write(tmp_path / "t" / "train" / "b" / "0.png")
    # Execute / Assert
    with pytest.raises(TargetError, match="test"):
        load_target(tmp_path / "t")


def test_read_image_names_unreadable_file(tmp_path: Path) -> None:
    # Prepare
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    _write(tmp_path / "good.png", 5)
    # Execute / Assert
    assert read_images([tmp_path / "good.png"])[0].size == (8, 8)
    with pytest.raises(TargetError, match=r"unreadable image .*broken\.png"):
        read_image(bad)


def test_task_name_from_sanitises() -> None:
    assert task_name_from(Path("/x/Fashion MNIST!")) == "fashion-mnist"
