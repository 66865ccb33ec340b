"""Shared pieces of the annotation-import tests: tiny images, masks drawn as text, and a
snapshot of a folder to prove an import wrote nothing."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.data.palette import read_label

# Characters of a mask drawn as text: "." is 0, a digit its class, "x" the ignore label.
_GRID_VALUES = {".": 0, "x": 255, **{str(digit): digit for digit in range(10)}}


def grid(text: str) -> np.ndarray:
    """A label map drawn as rows of characters (see ``_GRID_VALUES``), blank lines and
    surrounding spaces dropped."""
    rows = [line.strip() for line in text.strip().splitlines() if line.strip()]
    assert len({len(row) for row in rows}) == 1, "rows of different lengths"
    return np.array([[_GRID_VALUES[char] for char in row] for row in rows], dtype=np.uint8)


def image_bytes(width: int, height: int, image_format: str = "JPEG",
                orientation: int | None = None, color=(90, 140, 60)) -> bytes:
    """A small picture in ``image_format`` (with an EXIF orientation tag when given)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[...] = color
    pixels[:2, :2] = (255, 0, 0)  # a corner to tell the orientation by
    picture = Image.fromarray(pixels)
    buffer = io.BytesIO()
    options = {"quality": 95, "subsampling": 0} if image_format == "JPEG" else {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def write_image(path: Path, width: int, height: int, **kwargs) -> bytes:
    """Write ``image_bytes`` (JPEG unless the suffix says PNG) to ``path``; return them."""
    image_format = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    data = image_bytes(width, height, kwargs.pop("image_format", image_format), **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path, with its bytes (empty if no folder)."""
    if not folder.exists():
        return {}
    return {str(path.relative_to(folder)): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


def label(root: Path, name: str) -> np.ndarray:
    return read_label(root / "SegmentationClass" / f"{name}.png")


def listed(root: Path, split: str) -> list[str]:
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    return path.read_text().split() if path.is_file() else []
