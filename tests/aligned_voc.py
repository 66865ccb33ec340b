"""A tiny VOC-layout dataset whose image colours spell out its labels, for pipeline tests.

Three classes with pure colours far apart: 0 red, 1 green, 2 blue; the ignore label 255 is
white. Every image is a grid of flat cells of random classes with 3-pixel ignore bands on
some cell borders, saved as JPEG (quality 95, no chroma subsampling, so colour edges stay
within a pixel); its annotation is the matching palette PNG.

``colors_to_labels`` reads an (augmented) image back into labels: a saturated pixel is the
class of its strongest channel, a gray one (white, or the mean-colour padding) is 255. The
colour jitter (hue +-0.1, brightness +-0.1, contrast 0.8-1.2) keeps both properties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pixelwise.data.palette import write_label
from pixelwise.data.spec import DatasetSpec

SPEC = DatasetSpec(("red", "green", "blue"), ((255, 0, 0), (0, 255, 0), (0, 0, 255)))
IMAGE_COLORS = {0: (255, 0, 0), 1: (0, 255, 0), 2: (0, 0, 255), 255: (255, 255, 255)}
MIN_CELL = 14
BAND = 3


def make_label_map(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Flat cells of random classes (at least two), 255 bands on some of their borders."""
    def cuts(length: int) -> list[int]:
        count = int(rng.integers(1, max(2, length // (2 * MIN_CELL))))
        inner = sorted(rng.choice(np.arange(MIN_CELL, length - MIN_CELL + 1), size=count,
                                  replace=False).tolist())
        kept = [0]
        for cut in inner:
            if cut - kept[-1] >= MIN_CELL and length - cut >= MIN_CELL:
                kept.append(cut)
        return kept + [length]

    rows, cols = cuts(height), cuts(width)
    label_map = np.zeros((height, width), dtype=np.uint8)
    classes = rng.integers(0, 3, size=(len(rows) - 1, len(cols) - 1))
    classes.flat[:2] = rng.permutation(3)[:2]  # at least two classes
    for row in range(len(rows) - 1):
        for col in range(len(cols) - 1):
            label_map[rows[row]:rows[row + 1], cols[col]:cols[col + 1]] = classes[row, col]
    for cut in rows[1:-1]:
        if rng.random() < 0.7:
            label_map[cut - 1:cut - 1 + BAND] = 255
    for cut in cols[1:-1]:
        if rng.random() < 0.7:
            label_map[:, cut - 1:cut - 1 + BAND] = 255
    if not (label_map == 255).any():
        label_map[:BAND] = 255
    return label_map


def label_colors(label_map: np.ndarray) -> np.ndarray:
    image = np.zeros(label_map.shape + (3,), dtype=np.uint8)
    for value, color in IMAGE_COLORS.items():
        image[label_map == value] = color
    return image


def make_aligned_voc(root: Path, sizes: dict[str, list[tuple[int, int]]], seed: int = 0) -> Path:
    """Write ROOT/{JPEGImages,SegmentationClass,ImageSets/Segmentation}, one list per split.

    ``sizes`` maps a split name (its list file) to the (height, width) of its images;
    names are ``{split}_{index:03d}``.
    """
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    SPEC.save(root / "pixelwise_dataset.json")
    for split, split_sizes in sizes.items():
        names = [f"{split}_{index:03d}" for index in range(len(split_sizes))]
        for name, (height, width) in zip(names, split_sizes):
            label_map = make_label_map(height, width, rng)
            Image.fromarray(label_colors(label_map)).save(root / "JPEGImages" / f"{name}.jpg",
                                                          quality=95, subsampling=0)
            write_label(root / "SegmentationClass" / f"{name}.png", label_map, SPEC)
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


def colors_to_labels(image: np.ndarray, gray_chroma: float = 100.0) -> np.ndarray:
    """Float or uint8 RGB [..., 3] -> the labels its colours encode (see the module doc)."""
    image = np.asarray(image, dtype=np.float32)
    chroma = image.max(axis=-1) - image.min(axis=-1)
    return np.where(chroma < gray_chroma, 255, image.argmax(axis=-1)).astype(np.uint8)


def interior(label_map: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose (2 radius + 1)^2 neighbourhood holds a single label value."""
    padded = np.pad(label_map, radius, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * radius + 1,) * 2)
    return windows.min(axis=(-1, -2)) == windows.max(axis=(-1, -2))
