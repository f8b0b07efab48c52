"""Decoding images that come from outside: the one guard every image reader goes through.

Target folders (builder), images to classify and probe folders (agent) and corpus importers are
files a user or a camera wrote. A PNG of a few hundred kilobytes can declare 20000 x 20000 pixels
and take gigabytes to decode, and a flipped byte makes Pillow raise any of a dozen exception
types. `decode_image` reads the header, refuses a declared size over `limits.MAX_IMAGE_PIXELS`
before any pixel is decoded, then decodes fully, and turns every failure into an ImageError
subclass that names the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image

from plada import limits
from plada.errors import ImageDecodeError, ImageTooLargeError

__all__ = ["check_image_size", "decode_image"]


def check_image_size(width: int, height: int, *, name: str, max_pixels: int) -> None:
    """Raise ImageTooLargeError if width x height is over max_pixels."""
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{name}: {width} x {height} pixels is over the decode bound of {max_pixels:,} "
            "pixels (plada.limits.MAX_IMAGE_PIXELS); resize it first"
        )


def decode_image(
    source: Path | bytes,
    *,
    name: str | None = None,
    max_pixels: int = limits.MAX_IMAGE_PIXELS,
) -> Image.Image:
    """The fully decoded image at `source` (a file path or encoded bytes).

    Raises ImageTooLargeError before decoding when the header declares more than `max_pixels`
    pixels, and ImageDecodeError (a missing file included) for anything Pillow cannot read.
    `name` is what messages call the image (default: the path, or "image").
    """
    label = name or (str(source) if isinstance(source, Path) else "image")
    stream = io.BytesIO(source) if isinstance(source, bytes | bytearray) else source
    try:
        # Pillow's own bomb check warns at 89 MP and raises at 179 MP; ours is stricter and
        # names the file, so its warning is silenced here (warnings are errors in the tests).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as image:
                check_image_size(*image.size, name=label, max_pixels=max_pixels)
                image.load()
                return image.copy()
    except ImageTooLargeError:
        raise
    except Image.DecompressionBombError as exc:  # so large that Pillow refused it at open
        raise ImageTooLargeError(
            f"{label}: over the decode bound of {max_pixels:,} pixels ({exc})"
        ) from exc
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"{label}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError(f"{label}: is a folder, not an image") from exc
    except (
        Exception
    ) as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError... for bad data
        raise ImageDecodeError(f"{label}: cannot decode image ({exc})") from exc
