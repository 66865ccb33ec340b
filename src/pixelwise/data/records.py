"""Prepared datasets: each split as sharded TFRecords plus a manifest.json, and reading them.

    prepare_records("data/VOCdevkit/VOC2012", "data/voc-records")   # data.records_writer
    make_dataset("data/voc-records", "train", ...)                   # reads them through
                                                                     # RecordsSource
A records folder:

    manifest.json                       written last: classes, colours, ignore label, and
                                        per split its shards, names, pixel counts, checksum
    train-00000-of-00006.tfrecord       one tf.train.Example per image/annotation pair
    ...

Each record holds the image file's own bytes (JPEG, PNG, BMP or GIF: nothing is re-encoded
and the pixels equal the folder's), the annotation as a single-channel ("L") PNG of class
indices (so ``tf.io.decode_png(channels=1)`` gives the indices), the name, height and width.
Opening a folder checks its shards against the manifest (``verify_shards``), naming a
truncated one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from pixelwise.data.shards import verify_split_shards
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.voc import DEFAULT_SPLIT_SEED, SPLITS

MANIFEST_FILENAME = "manifest.json"
RECORDS_FORMAT = "pixelwise-records"
FORMAT_VERSION = 1
DEFAULT_EXAMPLES_PER_SHARD = 256
DEFAULT_SPLITS = ("train", "val", "test")

FEATURES = {
    "name": tf.io.FixedLenFeature([], tf.string),
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "label/encoded": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00000-of-00004.tfrecord``."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def split_key(split: str) -> str:
    """The name a split goes by in a records folder (a list file's stem for a path)."""
    return split if split in SPLITS else Path(split).stem


# --------------------------------------------------------------------------- writing


def read_manifest(records_dir: str | Path) -> dict:
    """The manifest of a records folder, checked for the format and the fields used."""
    path = Path(records_dir) / MANIFEST_FILENAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: cannot read the records manifest ({error}); "
                         f"rerun `pixelwise data prepare`") from error
    if manifest.get("format") != RECORDS_FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a {RECORDS_FORMAT} manifest of version {FORMAT_VERSION}; "
                         f"rerun `pixelwise data prepare`")
    for key in ("dataset", "splits", "split_seed"):
        if key not in manifest:
            raise ValueError(f"{path}: manifest lacks {key!r}; rerun `pixelwise data prepare`")
    return manifest


def verify_shards(records_dir: str | Path, split: str | None = None, *,
                  manifest: dict | None = None) -> None:
    """Check that the shards of ``split`` (default: every prepared split) are all there,
    whole, and hold the manifest's number of records (``shards.verify_split_shards``);
    FileNotFoundError or ``ShardError`` (a ValueError) naming the shard and the rerun."""
    root = Path(records_dir)
    manifest = manifest or read_manifest(root)
    keys = list(manifest["splits"]) if split is None else [split_key(split)]
    for key in keys:
        if key not in manifest["splits"]:
            raise ValueError(f"{root}: split {key!r} was not prepared")
        fix = (f"rerun `pixelwise data prepare {manifest.get('source', 'SOURCE')} --out {root} "
               f"--split {key}`")
        verify_split_shards(root, key, manifest["splits"][key], fix)


@dataclass
class RecordsSource:
    """A records folder written by ``prepare_records``, as a pipeline ``DataSource``.

    ``file_shard=(count, index)`` makes ``elements`` read only the shard files ``index,
    index + count, ...`` of a split (one worker's part of a multi-worker run); everything
    else still describes the whole split.
    """

    root: Path
    manifest: dict
    file_shard: tuple[int, int] | None = None

    @classmethod
    def open(cls, records_dir: str | Path) -> "RecordsSource":
        root = Path(records_dir)
        manifest = read_manifest(root)
        verify_shards(root, manifest=manifest)
        return cls(root, manifest)

    @property
    def spec(self) -> DatasetSpec:
        return DatasetSpec.from_dict(self.manifest["dataset"],
                                     source=str(self.root / MANIFEST_FILENAME))

    def split_info(self, split: str, split_seed: int = DEFAULT_SPLIT_SEED) -> dict:
        key = split_key(split)
        splits = self.manifest["splits"]
        if key not in splits:
            raise ValueError(f"{self.root}: split {key!r} was not prepared (prepared: "
                             f"{', '.join(splits) or 'none'}); run `pixelwise data prepare "
                             f"SOURCE --out {self.root} --split {key}`")
        # Manifests written before "seeded" was recorded: VOC's val and test were halves.
        seeded = splits[key].get("seeded", key in ("val", "test"))
        if seeded and split_seed != self.manifest["split_seed"]:
            raise ValueError(f"{self.root}: split {key!r} was prepared with split seed "
                             f"{self.manifest['split_seed']}, not {split_seed}; use that seed "
                             f"or prepare again with --split-seed {split_seed}")
        return splits[key]

    def split_names(self, split: str, split_seed: int = DEFAULT_SPLIT_SEED) -> list[str]:
        return list(self.split_info(split, split_seed)["names"])

    def num_examples(self, split: str, split_seed: int = DEFAULT_SPLIT_SEED) -> int:
        return int(self.split_info(split, split_seed)["num_examples"])

    def class_pixel_counts(self, split: str,
                           split_seed: int = DEFAULT_SPLIT_SEED) -> np.ndarray:
        return np.asarray(self.split_info(split, split_seed)["class_pixel_counts"],
                          dtype=np.int64)

    def image_sizes(self, split: str,
                    split_seed: int = DEFAULT_SPLIT_SEED) -> dict[tuple[int, int], int]:
        return {(height, width): count
                for height, width, count in self.split_info(split, split_seed)["image_sizes"]}

    def elements(self, split: str, split_seed: int, *, shuffle_seed: int | None,
                 shuffle_buffer: int) -> tf.data.Dataset:
        """Serialized records; shards read in parallel, round-robin, and with
        ``shuffle_seed`` in shuffled shard order and through a ``shuffle_buffer`` shuffle."""
        files = [str(self.root / name) for name in self.split_info(split, split_seed)["shards"]]
        dataset = tf.data.Dataset.from_tensor_slices(files)
        if self.file_shard is not None:
            count, index = self.file_shard
            if not 0 <= index < count <= len(files):
                raise ValueError(f"{self.root}: split {split_key(split)!r} has {len(files)} "
                                 f"shard(s); cannot read part {index} of {count} by files")
            dataset = dataset.shard(count, index)
            files = files[index::count]
        if shuffle_seed is not None:
            dataset = dataset.shuffle(len(files), seed=shuffle_seed,
                                      reshuffle_each_iteration=True)
        dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                                     block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                                     deterministic=True)
        if shuffle_seed is not None:
            dataset = dataset.shuffle(shuffle_buffer, seed=shuffle_seed + 1,
                                      reshuffle_each_iteration=True)
        return dataset

    def read(self, serialized: tf.Tensor) -> dict:
        parsed = tf.io.parse_single_example(serialized, FEATURES)
        where = tf.strings.join([str(self.root), "/", parsed["name"]])
        return {"name": parsed["name"], "image_bytes": parsed["image/encoded"],
                "label_bytes": parsed["label/encoded"],
                "image_source": tf.strings.join([where, " (image)"]),
                "label_source": tf.strings.join([where, " (annotation)"])}


__all__ = ["MANIFEST_FILENAME", "read_manifest", "RecordsSource", "shard_name", "split_key",
           "verify_shards"]
