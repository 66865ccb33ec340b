"""Annotation images <-> class-index maps <-> RGB pictures.

VOC stores each annotation as an 8-bit palette PNG whose pixel values already are
the class indices; reading them never needs the RGB expansion.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.data.images import open_image
from pixelwise.data.spec import IGNORE_LABEL, DatasetSpec

# PIL modes whose pixel values can be class indices as they are.
INDEX_MODES = ("P", "L")


def read_label(path: str | Path) -> np.ndarray:
    """Read a palette or single-channel annotation PNG as a uint8 [H, W] class-index map."""
    path = Path(path)
    try:
        with open_image(path) as image:
            if image.mode not in INDEX_MODES:
                raise ValueError(
                    f"{path}: annotation has mode {image.mode}, expected a palette (P) or "
                    f"single-channel (L) image of class indices; RGB masks can be converted "
                    f"with `pixelwise data import-rgb-masks`")
            return np.array(image, dtype=np.uint8)
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{path}: cannot decode annotation: {error}") from error


def write_label(path: str | Path, label_map: np.ndarray, spec: DatasetSpec | None = None) -> None:
    """Write a uint8 class-index map as a palette PNG coloured with the dataset's palette."""
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise ValueError(f"{path}: a label map is [H, W], got shape {label_map.shape}")
    if label_map.min(initial=0) < 0 or label_map.max(initial=0) > 255:
        raise ValueError(f"{path}: label values must lie in 0..255")
    image = Image.fromarray(label_map.astype(np.uint8), mode="P")
    image.putpalette((spec or DatasetSpec.voc()).palette().reshape(-1).tolist())
    image.save(path)


def colorize(label_map: np.ndarray, spec: DatasetSpec | None = None,
             ignore_color: tuple[int, int, int] = (224, 224, 192)) -> np.ndarray:
    """Class-index map [..., H, W] -> uint8 RGB [..., H, W, 3] with the dataset's colours.

    One palette lookup for every pixel; values that are not classes (the ignore label,
    or anything else) get ``ignore_color``.
    """
    spec = spec or DatasetSpec.voc()
    lookup = np.tile(np.asarray(ignore_color, dtype=np.uint8), (256, 1))
    lookup[: spec.num_classes] = np.asarray(spec.colors, dtype=np.uint8)
    return lookup[np.asarray(label_map, dtype=np.uint8)]


def rgb_to_index(rgb: np.ndarray, spec: DatasetSpec | None = None,
                 ignore_colors: tuple[tuple[int, int, int], ...] = ((224, 224, 192),),
                 source: str = "mask") -> np.ndarray:
    """RGB mask [H, W, 3] -> uint8 class-index map, vectorised.

    Pixels in a class colour get that class; pixels in one of ``ignore_colors`` get the
    ignore label. Any other colour raises an error that lists them with their pixel counts.
    """
    spec = spec or DatasetSpec.voc()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"{source}: an RGB mask is [H, W, 3], got shape {rgb.shape}")
    codes = _rgb_codes(rgb.astype(np.uint32))
    lookup_colors = list(spec.colors) + list(ignore_colors)
    lookup_values = list(range(spec.num_classes)) + [spec.ignore_label] * len(ignore_colors)
    known_codes = _rgb_codes(np.asarray(lookup_colors, dtype=np.uint32))
    order = np.argsort(known_codes)
    sorted_codes = known_codes[order]
    position = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
    matched = sorted_codes[position] == codes
    if not matched.all():
        unknown, counts = np.unique(codes[~matched], return_counts=True)
        listing = ", ".join(
            f"({code >> 16}, {(code >> 8) & 255}, {code & 255}) x{count}"
            for code, count in sorted(zip(unknown.tolist(), counts.tolist()), key=lambda c: -c[1]))
        raise ValueError(f"{source}: {len(unknown)} colour(s) not in the palette: {listing}")
    return np.asarray(lookup_values, dtype=np.uint8)[order][position]


def _rgb_codes(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


__all__ = ["IGNORE_LABEL", "read_label", "write_label", "colorize", "rgb_to_index"]
