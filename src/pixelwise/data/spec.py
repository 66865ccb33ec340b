"""What a dataset's labels mean: class names, their colours, the ignore label.

VOC 2012 and CamVid (the SegNet tutorial's 11-class release) are built in. A user's own
dataset carries a small JSON file (``pixelwise_dataset.json``) beside its image folders:

    {"class_names": ["background", "road", "toy"],
     "colors": [[0, 0, 0], [128, 64, 128], [220, 20, 60]],
     "ignore_label": 255}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IGNORE_LABEL = 255
# The colour of ignored pixels in pictures and palettes (VOC's boundary colour).
IGNORE_COLOR = (224, 224, 192)
SPEC_FILENAME = "pixelwise_dataset.json"

VOC_CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
    "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)

# CamVid's 11 classes and colours as the SegNet tutorial gives them
# (Scripts/test_segmentation_camvid.py); value 11 is "unlabelled".
CAMVID_CLASS_NAMES = (
    "sky", "building", "pole", "road", "pavement", "tree", "signsymbol", "fence", "car",
    "pedestrian", "bicyclist",
)
CAMVID_COLORS = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222),
    (128, 128, 0), (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)
CAMVID_IGNORE_LABEL = 11


def voc_colormap(num_entries: int = 256) -> np.ndarray:
    """The VOC palette: entry i spreads the bits of i over R, G and B, high bits last.

    Entry 255 (the boundary/ignore label) comes out as (224, 224, 192), as in VOC's PNGs.
    """
    colormap = np.zeros((num_entries, 3), dtype=np.uint8)
    for index in range(num_entries):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colormap[index] = (red, green, blue)
    return colormap


@dataclass(frozen=True)
class DatasetSpec:
    """Class names, one RGB colour per class, and the label value that means "ignore"."""

    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    ignore_label: int = IGNORE_LABEL

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.colors):
            raise ValueError(
                f"{len(self.class_names)} class names but {len(self.colors)} colours")
        if not 1 <= len(self.class_names) <= 255:
            raise ValueError(f"between 1 and 255 classes are supported, got {len(self.class_names)}")
        if len(set(self.colors)) != len(self.colors):
            raise ValueError("two classes share a colour; each class needs its own")
        if not 0 <= self.ignore_label <= 255:
            raise ValueError(f"ignore_label {self.ignore_label} is not in 0..255")
        if self.ignore_label < len(self.class_names):
            raise ValueError(f"ignore_label {self.ignore_label} collides with a class index")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def palette(self) -> np.ndarray:
        """A 256-entry palette for 8-bit PNGs: class colours first, the ignore colour at its index."""
        palette = voc_colormap(256)
        palette[: self.num_classes] = np.asarray(self.colors, dtype=np.uint8)
        palette[self.ignore_label] = IGNORE_COLOR
        return palette

    @classmethod
    def voc(cls) -> "DatasetSpec":
        colormap = voc_colormap(len(VOC_CLASS_NAMES))
        return cls(VOC_CLASS_NAMES, tuple(tuple(int(c) for c in rgb) for rgb in colormap))

    @classmethod
    def camvid(cls) -> "DatasetSpec":
        """CamVid's 11 classes in the SegNet tutorial's colours; 11 (unlabelled) is ignored."""
        return cls(CAMVID_CLASS_NAMES, CAMVID_COLORS, CAMVID_IGNORE_LABEL)

    def to_dict(self) -> dict:
        return {"class_names": list(self.class_names),
                "colors": [list(rgb) for rgb in self.colors],
                "ignore_label": self.ignore_label}

    @classmethod
    def from_dict(cls, values: dict, source: str = "dataset description") -> "DatasetSpec":
        try:
            names = tuple(str(name) for name in values["class_names"])
            colors = tuple(tuple(int(c) for c in rgb) for rgb in values["colors"])
            ignore_label = int(values.get("ignore_label", IGNORE_LABEL))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{source}: needs 'class_names' and 'colors' "
                             f"(and optionally 'ignore_label'): {error}") from error
        for rgb in colors:
            if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
                raise ValueError(f"{source}: colour {list(rgb)} is not an RGB triple in 0..255")
        try:
            return cls(names, colors, ignore_label)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "DatasetSpec":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: cannot read the dataset description: {error}") from error
        return cls.from_dict(values, source=str(path))


def spec_for(dataset_root: str | Path, default: DatasetSpec | None = None) -> DatasetSpec:
    """The description next to a dataset (its ``pixelwise_dataset.json``), else ``default``
    (the built-in description of the dataset's layout; VOC's when not given)."""
    path = Path(dataset_root) / SPEC_FILENAME
    if path.exists():
        return DatasetSpec.load(path)
    return default if default is not None else DatasetSpec.voc()
