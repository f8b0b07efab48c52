"""plada.images: the one decode guard every image reader goes through."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from plada.errors import ImageDecodeError, ImageTooLargeError
from plada.images import decode_image
from tools.tiny.damage import gray_png


def test_decode_image_returns_a_loaded_copy(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "ok.png"
    Image.new("RGB", (7, 5), (10, 20, 30)).save(path)
    # Execute
    image = decode_image(path)
    from_bytes = decode_image(path.read_bytes(), name="upload")
    # Assert
    assert image.size == (7, 5) and image.getpixel((0, 0)) == (10, 20, 30)
    assert from_bytes.tobytes() == image.tobytes()


@pytest.mark.parametrize(("width", "height"), [(12_000, 12_000), (20_000, 20_000)])
def test_decode_image_refuses_a_declared_size_over_the_bound_before_decoding(
    tmp_path: Path, width: int, height: int
) -> None:
    # Prepare: under Pillow's own limit (warning only) and over it (its error)
    path = gray_png(tmp_path / "big.png", width=width, height=height, rows=4)
    # Execute / Assert: no DecompressionBombWarning escapes (warnings are errors here)
    with pytest.raises(ImageTooLargeError, match=r"big\.png: .*over the decode bound"):
        decode_image(path)


def test_decode_image_bound_is_a_parameter(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    Image.new("L", (100, 100)).save(path)
    with pytest.raises(ImageTooLargeError, match="100 x 100"):
        decode_image(path, max_pixels=9_999)


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"not an image", "cannot decode image"), (None, "no such file")],
)
def test_decode_image_names_the_file_it_cannot_read(
    tmp_path: Path, content: bytes | None, expected: str
) -> None:
    # Prepare
    path = tmp_path / "bad.png"
    if content is not None:
        path.write_bytes(content)
    # Execute / Assert
    with pytest.raises(ImageDecodeError, match=rf"bad\.png: {expected}"):
        decode_image(path)


def test_decode_image_reports_a_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ImageDecodeError, match=r"cut\.png"):
        decode_image(path)
