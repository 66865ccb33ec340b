"""The images of an import: opening them (errors that name the file), finding them, the
suffix their copy gets, and their EXIF rotation.

EXIF rotation: LabelMe and CVAT show a photo with its EXIF orientation applied (labelme's
``LabelFile.load_image_file``; CVAT since 2022), so their coordinates and the size they
state are those of the turned picture. pixelwise reads the pixels as the file stores them
(``data.images`` opens with Pillow without turning, TensorFlow's decoders ignore EXIF, and
``data check`` compares sizes on the stored grid), and the import copies each image byte
for byte. So shapes are drawn on the turned picture, at the size the tool showed, and the
finished label map is turned back onto the stored grid (``to_stored_grid``): image and
label then line up pixel for pixel wherever pixelwise reads them.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from pixelwise.data.annotations.annotated import ImageRef
from pixelwise.data.images import OversizedImageError, open_image, unsupported_format
from pixelwise.data.voc import IMAGE_SUFFIXES

EXIF_ORIENTATION = 0x0112
# The transpose that takes a picture shown with EXIF orientation N back to the stored grid
# (the inverse of what ``PIL.ImageOps.exif_transpose`` applies).
_BACK_TO_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}
FORMAT_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp"}


@dataclass(frozen=True)
class ImageInfo:
    """What the importer needs of an image: its format, the size of its stored pixel grid
    (width, height) and its EXIF orientation (1: shown as stored)."""

    format: str
    stored_size: tuple[int, int]
    orientation: int = 1

    @property
    def shown_size(self) -> tuple[int, int]:
        """(width, height) as a labelling tool shows it (orientations 5-8 swap the sides)."""
        width, height = self.stored_size
        return (height, width) if self.orientation in (5, 6, 7, 8) else (width, height)


def read_image(ref: ImageRef) -> tuple[bytes, ImageInfo]:
    """An image's bytes, opened and decoded; ValueError naming it when it is empty, does not
    decode, is above the pixel limit or in a format the pipeline does not read."""
    try:
        data = ref.read_bytes()
    except OSError as error:
        raise ValueError(f"{ref.where}: cannot read the image: {error}") from error
    if not data:
        raise ValueError(f"{ref.where}: the image file is empty (0 bytes); copy the image "
                         f"again from where it was labelled")
    try:
        with open_image(ref.where, io.BytesIO(data)) as image:
            image.load()
            image_format, size = image.format, image.size
            orientation = int(image.getexif().get(EXIF_ORIENTATION, 1) or 1)
    except OversizedImageError:
        raise
    except (OSError, SyntaxError, ValueError, TypeError) as error:
        raise ValueError(f"{ref.where}: cannot decode the image ({error}); copy it again "
                         f"from where it was labelled") from None
    problem = unsupported_format(ref.where, image_format)
    if problem:
        raise ValueError(problem)
    return data, ImageInfo(image_format, size, orientation if orientation in range(1, 9) else 1)


def to_stored_grid(label_map: np.ndarray, orientation: int) -> np.ndarray:
    """A label map drawn on the picture as shown (EXIF ``orientation`` applied) turned onto
    the image's stored pixel grid."""
    method = _BACK_TO_STORED.get(orientation)
    if method is None:
        return label_map
    return np.asarray(Image.fromarray(label_map).transpose(method), dtype=np.uint8)


def copy_suffix(original: str, image_format: str) -> str | None:
    """The suffix an image's copy gets: its own where the VOC layout finds that
    (``.JPG`` stays; ``.Jpg`` becomes ``.jpg``), else its format's; None when the layout
    reads no suffix of its format (GIF)."""
    if original in IMAGE_SUFFIXES:
        return original
    if original.lower() in IMAGE_SUFFIXES:
        return original.lower()
    return FORMAT_SUFFIXES.get(image_format)


def find_image(roots: list[Path], relative: str) -> Path | None:
    """The first file ``ROOT/relative`` or ``ROOT/<its file name>`` over ``roots``
    (Windows separators in ``relative`` are read as ``/``)."""
    relative = relative.replace("\\", "/")
    parts = [part for part in PurePosixPath(relative).parts if part not in ("/", ".")]
    if not parts:
        return None
    for root in roots:
        for candidate in (root.joinpath(*parts), root / parts[-1]):
            if candidate.is_file():
                return candidate
    return None


__all__ = ["ImageInfo", "copy_suffix", "find_image", "read_image", "to_stored_grid"]
