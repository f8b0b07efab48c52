"""plada.views: every op's pixels, bounds named on decode, one canonical encoding, a digest."""

from __future__ import annotations

import cbor2
import numpy as np
import pytest
from PIL import Image

from plada.errors import PayloadDecodeError, PayloadError, PayloadLimitError, PayloadValueError
from plada.views import (
    MAX_SIDE,
    MAX_VIEW_OPS,
    View,
    ViewOp,
    apply_view,
    content_box,
    view_from_obj,
    view_from_ops,
)


def _digit_like() -> Image.Image:
    """A 28x28 dark image with a bright 6x10 bar at (10, 8)."""
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[8:18, 10:16] = 200
    return Image.fromarray(pixels, mode="L")


def test_crop_content_finds_the_box_and_keeps_a_square_margin() -> None:
    image = _digit_like()
    assert content_box(image, 64) == (10, 8, 16, 18)
    view = view_from_ops([{"op": "crop_content", "threshold": 64, "margin": 10, "square": 1}])
    out = apply_view(view, image)
    # 6x10 box -> 10x10 square -> 1 px margin (10 % of 10) each side -> 12x12
    assert out.size == (12, 12)
    arr = np.asarray(out)
    assert arr[0].max() == 0 and arr[:, 0].max() == 0  # background filled with the border median
    assert (arr == 200).sum() == 60  # every content pixel kept


def test_crop_content_of_a_blank_image_is_the_image() -> None:
    blank = Image.new("L", (16, 16), 30)
    view = view_from_ops([{"op": "crop_content", "threshold": 1, "margin": 0, "square": 0}])
    assert apply_view(view, blank).size == (16, 16)


def test_resize_quantize_grayscale_invert_polarity() -> None:
    rgb = Image.fromarray(np.full((10, 10, 3), 250, dtype=np.uint8), mode="RGB")
    view = view_from_ops(
        [
            {"op": "grayscale"},
            {"op": "polarity", "background": "dark"},
            {"op": "resize", "size": 4, "filter": "box"},
            {"op": "quantize", "levels": 2},
        ]
    )
    out = apply_view(view, rgb)
    assert out.mode == "L" and out.size == (4, 4)
    assert np.asarray(out).max() == 0  # light background inverted to 5, quantised to 0
    ramp = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), mode="L")
    levels = np.unique(
        np.asarray(apply_view(view_from_ops([{"op": "quantize", "levels": 5}]), ramp))
    )
    assert levels.tolist() == [0, 64, 128, 191, 255]
    inverted = apply_view(view_from_ops([{"op": "invert"}]), ramp)
    assert np.array_equal(np.asarray(inverted), 255 - np.asarray(ramp))


def test_pad_and_autocontrast() -> None:
    image = Image.fromarray(np.full((10, 20), 100, dtype=np.uint8), mode="L")
    padded = apply_view(view_from_ops([{"op": "pad", "margin": 10, "fill": 7}]), image)
    assert padded.size == (24, 14) and np.asarray(padded)[0, 0] == 7
    ramp = Image.fromarray(np.linspace(50, 150, 64).astype(np.uint8).reshape(8, 8), mode="L")
    stretched = np.asarray(apply_view(view_from_ops([{"op": "autocontrast", "cutoff": 0}]), ramp))
    assert stretched.min() == 0 and stretched.max() == 255


def test_growth_is_capped() -> None:
    ops: list[dict[str, int | str]] = [{"op": "resize", "size": 1024, "filter": "nearest"}]
    view = view_from_ops(ops + [{"op": "pad", "margin": 50, "fill": 0}] * 3)
    assert max(apply_view(view, Image.new("L", (4, 4))).size) <= MAX_SIDE


def test_apply_is_deterministic_and_none_is_identity() -> None:
    image = _digit_like().convert("RGB")
    view = view_from_ops(
        [
            {"op": "crop_content", "threshold": 64, "margin": 0, "square": 1},
            {"op": "resize", "size": 8, "filter": "box"},
            {"op": "quantize", "levels": 17},
        ]
    )
    first, second = apply_view(view, image), apply_view(view, image)
    assert first.tobytes() == second.tobytes()
    assert apply_view(None, image) is image


def test_encoding_is_canonical_and_the_digest_follows_the_content() -> None:
    a = view_from_ops([{"op": "resize", "filter": "box", "size": 8}, {"op": "grayscale"}])
    b = view_from_obj(cbor2.loads(a.encode()))
    assert b == a and b.encode() == a.encode()
    assert a.encode() == cbor2.dumps(cbor2.loads(a.encode()), canonical=True)
    c = view_from_ops([{"op": "resize", "filter": "box", "size": 9}, {"op": "grayscale"}])
    assert c.digest != a.digest and len(a.digest) == 64
    assert a.describe() == "resize(filter=box, size=8) > grayscale()"
    assert ViewOp.make("resize", size=8, filter="box") == a.ops[0]


@pytest.mark.parametrize(
    ("obj", "error", "field"),
    [
        ([], PayloadDecodeError, "view: expected a map"),
        ({"version": 2, "ops": [{"op": "invert"}]}, PayloadDecodeError, "view.version"),
        ({"version": 1, "ops": []}, PayloadLimitError, "view.ops"),
        ({"version": 1, "ops": [{"op": "invert"}] * 9}, PayloadLimitError, "view.ops"),
        ({"version": 1, "ops": [{"op": "blur"}]}, PayloadValueError, "view.ops[0].op"),
        ({"version": 1, "ops": [{"op": "invert", "x": 1}]}, PayloadDecodeError, "view.ops[0].x"),
        (
            {"version": 1, "ops": [{"op": "invert"}, {"op": "quantize", "levels": 1}]},
            PayloadValueError,
            "view.ops[1].levels: 1 is outside 2..256",
        ),
        ({"version": 1, "ops": [{"op": "quantize"}]}, PayloadDecodeError, "view.ops[0].levels"),
        (
            {"version": 1, "ops": [{"op": "quantize", "levels": True}]},
            PayloadDecodeError,
            "view.ops[0].levels",
        ),
        (
            {"version": 1, "ops": [{"op": "resize", "size": 8, "filter": "magic"}]},
            PayloadValueError,
            "view.ops[0].filter",
        ),
        (
            {"version": 1, "ops": [{"op": "resize", "size": 2000, "filter": "box"}]},
            PayloadValueError,
            "view.ops[0].size",
        ),
        ({"version": 1, "ops": [{"op": "invert"}], "code": b""}, PayloadDecodeError, "view.code"),
    ],
)
def test_decode_names_the_bad_field(obj: object, error: type[PayloadError], field: str) -> None:
    with pytest.raises(error) as raised:
        view_from_obj(obj)
    assert field in str(raised.value)


def test_a_view_needs_1_to_max_ops() -> None:
    with pytest.raises(PayloadLimitError):
        View(())
    with pytest.raises(PayloadLimitError):
        View((ViewOp.make("invert"),) * (MAX_VIEW_OPS + 1))
