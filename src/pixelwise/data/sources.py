"""Where training and evaluation examples come from: a VOC-layout folder or prepared records.

    data_source = open_source("data/VOCdevkit/VOC2012")     # or a records folder
    data_source.split_names("val")       # the images of a split, in list order
    describe_split(data_source, "test")  # "test: CamVid/test.txt, 233 images"
    elements = data_source.elements("train", split_seed, shuffle_seed=0, shuffle_buffer=1024)
    raw = data_source.read(element)      # bytes and file names, decoded by data.decoding

A path is called ``data_path`` here and an opened one a ``data_source``; the records
source lives beside the records writer (``data.records.RecordsSource``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import tensorflow as tf

from pixelwise.data.images import open_image
from pixelwise.data.palette import read_label
from pixelwise.data.records import MANIFEST_FILENAME, RecordsSource
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.voc import DEFAULT_SPLIT_SEED, ListedSplits, find_voc_root


class DataSource(Protocol):
    """Where examples come from: a VOC-layout folder or a folder of prepared records.

    ``elements`` gives a cheap dataset of references (file names or serialized records),
    ``read`` turns one into ``{"name", "image_bytes", "label_bytes", "image_source",
    "label_source"}`` (the last two name the files in error messages).
    """

    @property
    def spec(self) -> DatasetSpec: ...

    def split_names(self, split: str, split_seed: int = DEFAULT_SPLIT_SEED) -> list[str]: ...

    def num_examples(self, split: str, split_seed: int = DEFAULT_SPLIT_SEED) -> int: ...

    def class_pixel_counts(self, split: str,
                           split_seed: int = DEFAULT_SPLIT_SEED) -> np.ndarray: ...

    def image_sizes(self, split: str,
                    split_seed: int = DEFAULT_SPLIT_SEED) -> dict[tuple[int, int], int]: ...

    def elements(self, split: str, split_seed: int, *, shuffle_seed: int | None,
                 shuffle_buffer: int) -> tf.data.Dataset: ...

    def read(self, element: dict) -> dict: ...


@dataclass
class FolderSource:
    """A dataset folder (VOC layout or CamVid's), read file by file."""

    layout: ListedSplits
    _pixel_counts: dict = field(default_factory=dict, repr=False)

    @property
    def spec(self) -> DatasetSpec:
        return self.layout.spec

    def split_names(self, split: str, split_seed: int = DEFAULT_SPLIT_SEED) -> list[str]:
        return self.layout.split_names(split, split_seed)

    def num_examples(self, split: str, split_seed: int = DEFAULT_SPLIT_SEED) -> int:
        return len(self.split_names(split, split_seed))

    def class_pixel_counts(self, split: str,
                           split_seed: int = DEFAULT_SPLIT_SEED) -> np.ndarray:
        """Pixels per class over the split's labels (read once, then remembered), int64 [C]."""
        key = (split, split_seed)
        if key not in self._pixel_counts:
            value_counts = np.zeros(256, dtype=np.int64)
            for example in self.layout.examples(split, split_seed):
                value_counts += np.bincount(read_label(example.label_path).reshape(-1),
                                            minlength=256)
            self._pixel_counts[key] = value_counts[: self.spec.num_classes]
        return self._pixel_counts[key].copy()

    def image_sizes(self, split: str,
                    split_seed: int = DEFAULT_SPLIT_SEED) -> dict[tuple[int, int], int]:
        """{(height, width): number of images} over the split (reads only the image headers)."""
        sizes: dict[tuple[int, int], int] = {}
        for example in self.layout.examples(split, split_seed):
            with open_image(example.image_path) as image:
                size = (image.height, image.width)
            sizes[size] = sizes.get(size, 0) + 1
        return sizes

    def elements(self, split: str, split_seed: int, *, shuffle_seed: int | None,
                 shuffle_buffer: int) -> tf.data.Dataset:
        """File names of the split, in list order or (with ``shuffle_seed``) fully shuffled.

        Shuffling names is free, so the whole split is shuffled and ``shuffle_buffer`` is
        not needed here.
        """
        examples = self.layout.examples(split, split_seed)
        if not examples:
            raise ValueError(f"{self.layout.list_file(split)}: split {split!r} lists no images")
        elements = tf.data.Dataset.from_tensor_slices({
            "name": [example.name for example in examples],
            "image_path": [str(example.image_path) for example in examples],
            "label_path": [str(example.label_path) for example in examples],
        })
        if shuffle_seed is not None:
            elements = elements.shuffle(len(examples), seed=shuffle_seed,
                                        reshuffle_each_iteration=True)
        return elements

    def read(self, element: dict) -> dict:
        return {"name": element["name"],
                "image_bytes": tf.io.read_file(element["image_path"]),
                "label_bytes": tf.io.read_file(element["label_path"]),
                "image_source": element["image_path"],
                "label_source": element["label_path"]}


def open_source(data_path: str | Path | DataSource) -> DataSource:
    """The data source at ``data_path``: a records folder (one holding manifest.json) or
    anything ``find_voc_root`` accepts. An already open data source is returned as it is."""
    if not isinstance(data_path, (str, Path)):
        return data_path
    root = Path(data_path)
    if (root / MANIFEST_FILENAME).is_file():
        return RecordsSource.open(root)
    return FolderSource(find_voc_root(root))


def describe_split(data_source: DataSource, split: str,
                   split_seed: int = DEFAULT_SPLIT_SEED) -> str:
    """Which list a split reads and how many images, for every command to print:
    ``test: data/CamVid/test.txt, 233 images``, ``test: second half of .../val.txt (seed 0),
    725 images``, or for prepared records the list they were prepared from."""
    if isinstance(data_source, FolderSource):
        return data_source.layout.describe_split(split, split_seed)
    count = data_source.num_examples(split, split_seed)
    if isinstance(data_source, RecordsSource):
        info = data_source.split_info(split, split_seed)
        origin = f" (prepared from {info['list_file']})" if info.get("list_file") else ""
        where = f"records in {data_source.root}{origin}"
    else:
        where = type(data_source).__name__
    return f"{split}: {where}, {count} image{'' if count == 1 else 's'}"


__all__ = ["DataSource", "FolderSource", "describe_split", "open_source"]
