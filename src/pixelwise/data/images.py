"""Image files as the data layer opens them with Pillow: named errors, and the formats the
input pipeline decodes.

Pixel limit: Pillow refuses to open an image above its decompression-bomb limit,
``2 * PIL.Image.MAX_IMAGE_PIXELS`` (178,956,970 pixels by default, e.g. 20000 x 8948) and
warns above ``MAX_IMAGE_PIXELS``. pixelwise keeps that limit for reading datasets and turns
Pillow's error into one line naming the file and the limit (raise ``MAX_IMAGE_PIXELS``
before reading to allow larger images).

Formats: images may be JPEG, PNG, BMP or GIF, whatever their file name's suffix (the
pipeline decodes them with TensorFlow); others Pillow reads (TIFF, WebP, ...) are refused.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import BinaryIO, Iterator

from PIL import Image

PIPELINE_FORMATS = ("JPEG", "PNG", "BMP", "GIF")


class OversizedImageError(ValueError):
    """An image above Pillow's decompression-bomb pixel limit."""


def pixel_limit() -> int | None:
    """The most pixels an image may have to be opened (None: no limit)."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


@contextlib.contextmanager
def open_image(path: str | Path, data: BinaryIO | None = None) -> Iterator[Image.Image]:
    """``PIL.Image.open`` (of ``data`` when given, named ``path``), raising
    OversizedImageError naming ``path`` instead of Pillow's DecompressionBombError."""
    try:
        image = Image.open(path if data is None else data)
    except Image.DecompressionBombError as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        size = f"image of {int(pixels.group(1)):,} pixels" if pixels else "image"
        raise OversizedImageError(
            f"{path}: {size} is above the limit of {pixel_limit():,} pixels (Pillow's "
            f"decompression-bomb guard); downscale it") from None
    with image:
        yield image


def unsupported_format(path: str | Path, image_format: str | None) -> str | None:
    """The problem with an image of ``image_format`` (Pillow's name), or None if the
    pipeline decodes it."""
    if image_format in PIPELINE_FORMATS:
        return None
    return (f"{path}: is a {image_format or 'an unknown'} file; images must be "
            f"{', '.join(PIPELINE_FORMATS[:-1])} or {PIPELINE_FORMATS[-1]}: "
            f"re-save it as JPEG or PNG")


__all__ = ["PIPELINE_FORMATS", "OversizedImageError", "open_image", "pixel_limit",
           "unsupported_format"]
