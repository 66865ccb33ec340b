"""Writing prepared datasets: each split of a dataset folder as sharded TFRecords.

``prepare_records`` streams: one pair in memory at a time, each validated as it goes (the
image is a JPEG, PNG, BMP or GIF that decodes, the annotation holds class indices of the
image's size). A shard is written under a temporary name and renamed when complete, so an
interrupted run leaves no half shard; a rerun keeps the complete shards whose names match
and writes the rest (it trusts that files of the same name did not change; delete the
folder otherwise). Preparing other splits into the same folder adds them to the manifest.
With ``workers`` > 1 the shards are written by that many processes, one shard per task;
each shard holds the same examples in the same order either way, so the files are
byte-identical. The format: :mod:`pixelwise.data.records`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf
from PIL import Image

from pixelwise.data.check import check_class_coverage
from pixelwise.data.images import open_image, unsupported_format
from pixelwise.data.palette import read_label
from pixelwise.data.records import (
    DEFAULT_EXAMPLES_PER_SHARD,
    DEFAULT_SPLITS,
    FEATURES,
    FORMAT_VERSION,
    MANIFEST_FILENAME,
    RECORDS_FORMAT,
    read_manifest,
    shard_name,
    split_key,
)
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.voc import DEFAULT_SPLIT_SEED, Example, VOCLayout, find_voc_root
from pixelwise.io import TEMP_PREFIX, write_atomically, write_text_atomically


def prepare_records(source: str | Path, out_dir: str | Path, splits: tuple[str, ...] | None = None,
                    *, split_seed: int = DEFAULT_SPLIT_SEED,
                    examples_per_shard: int = DEFAULT_EXAMPLES_PER_SHARD,
                    progress: Callable[[str], None] | None = None, workers: int = 1) -> dict:
    """Write ``splits`` of a VOC-layout dataset as TFRecord shards and a manifest; return it.

    Args:
        source: anything ``find_voc_root`` accepts.
        out_dir: the records folder (created if needed).
        splits: split names or list files; default: those of train, val and test whose
            list exists (val and test are the seeded halves of val.txt).
        split_seed: the seed of the val/test halves, recorded in the manifest.
        examples_per_shard: the most pairs per shard.
        progress: called with one line per shard written or kept (in shard order).
        workers: processes writing shards at the same time (1: this process alone).

    Raises ValueError naming the file when a pair is invalid, FileNotFoundError when a
    split's list or listed files are missing. Shards completed before the error stay.
    A training split (one whose name starts with "train") that labels fewer than two
    classes raises ``ClassCoverageError`` and its shards are removed.
    """
    layout = find_voc_root(source)
    spec = layout.spec
    if examples_per_shard < 1:
        raise ValueError(f"examples_per_shard must be positive, got {examples_per_shard}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if splits is None:
        splits = tuple(split for split in DEFAULT_SPLITS if layout.list_file(split).is_file())
        if not splits:
            raise FileNotFoundError(f"{layout.sets_dir}: none of {', '.join(DEFAULT_SPLITS)}"
                                    f".txt found; name the splits to prepare")
    keys = [split_key(split) for split in splits]
    if len(set(keys)) != len(keys):
        raise ValueError(f"splits {list(splits)} give duplicate names {keys}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    leftovers = [*out_dir.glob(f"{TEMP_PREFIX}*.tfrecord"), *out_dir.glob("*.tfrecord.tmp")]
    for leftover in leftovers:  # from a run that was killed
        leftover.unlink()
    report = progress or (lambda line: None)
    manifest = {"format": RECORDS_FORMAT, "version": FORMAT_VERSION,
                "source": str(layout.root), "split_seed": split_seed,
                "dataset": spec.to_dict(),
                "splits": _earlier_splits(out_dir, manifest_source=str(layout.root),
                                          split_seed=split_seed, spec=spec)}
    with _shard_executor(workers) as executor:
        for split, key in zip(splits, keys):
            manifest["splits"][key] = _write_split(layout, split, key, split_seed, spec, out_dir,
                                                   examples_per_shard, report, executor)
    write_text_atomically(out_dir / MANIFEST_FILENAME, json.dumps(manifest, indent=1) + "\n")
    return manifest


def _earlier_splits(out_dir: Path, manifest_source: str, split_seed: int,
                    spec: DatasetSpec) -> dict:
    """The splits an earlier run prepared in ``out_dir`` from the same source, classes and
    split seed, whose shards are all there: a run for other splits keeps them."""
    try:
        earlier = read_manifest(out_dir)
    except ValueError:
        return {}
    if (earlier["source"], earlier["split_seed"], earlier["dataset"]) != (
            manifest_source, split_seed, spec.to_dict()):
        return {}
    return {key: split for key, split in earlier["splits"].items()
            if all((out_dir / name).is_file() for name in split["shards"])}


def _shard_executor(workers: int) -> contextlib.AbstractContextManager[Executor | None]:
    """A pool of ``workers`` processes (None for one worker). They are spawned, not forked:
    a fork of a process running TensorFlow's threads can deadlock."""
    if workers == 1:
        return contextlib.nullcontext(None)
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"))


def _write_split(layout: VOCLayout, split: str, key: str, split_seed: int, spec: DatasetSpec,
                 out_dir: Path, examples_per_shard: int, report: Callable[[str], None],
                 executor: Executor | None = None) -> dict:
    list_file = layout.list_file(split)
    examples = layout.examples(split, split_seed)
    if not examples:
        raise ValueError(f"{list_file}: split {split!r} lists no images")
    num_shards = -(-len(examples) // examples_per_shard)
    shard_files = [shard_name(key, index, num_shards) for index in range(num_shards)]
    for stale in out_dir.glob(f"{key}-*-of-*.tfrecord"):
        if stale.name not in shard_files:
            stale.unlink()
    value_counts = np.zeros(256, dtype=np.int64)
    sizes: dict[tuple[int, int], int] = {}
    shard_examples = [examples[index * examples_per_shard:(index + 1) * examples_per_shard]
                      for index in range(num_shards)]
    paths = [out_dir / shard_file for shard_file in shard_files]
    tasks = (executor.map if executor is not None else map)(
        _keep_or_write_shard, paths, shard_examples, [spec] * num_shards)
    for shard_file, examples_in_shard, (shard_counts, shard_sizes, kept) in zip(
            shard_files, shard_examples, tasks):
        if kept:
            report(f"{shard_file}: complete, kept ({len(examples_in_shard)} examples)")
        else:
            report(f"{shard_file}: wrote {len(examples_in_shard)} examples")
        value_counts += shard_counts
        for size in shard_sizes:
            sizes[size] = sizes.get(size, 0) + 1
    class_counts = value_counts[: spec.num_classes]
    if key.startswith("train"):
        try:
            check_class_coverage(class_counts, spec, key)
        except ValueError:
            for path in paths:  # a rerun after fixing the labels must not keep them
                path.unlink(missing_ok=True)
            raise
    labelled = int(class_counts.sum())
    names = [example.name for example in examples]
    return {
        "num_examples": len(examples),
        "shards": shard_files,
        "shard_examples": [len(examples_in_shard) for examples_in_shard in shard_examples],
        "list_file": str(list_file),
        "seeded": layout.val_half(split) is not None,  # a half of val.txt: depends on the seed
        "list_sha256": hashlib.sha256(list_file.read_bytes()).hexdigest(),
        "names_sha256": _names_checksum(names),
        "names": names,
        "class_pixel_counts": class_counts.tolist(),
        "ignore_pixel_count": int(value_counts[spec.ignore_label]),
        "class_pixel_frequencies": [count / labelled if labelled else 0.0
                                    for count in class_counts.tolist()],
        "image_sizes": [[height, width, count] for (height, width), count in sorted(sizes.items())],
    }


def _keep_or_write_shard(path: Path, examples: list[Example], spec: DatasetSpec
                         ) -> tuple[np.ndarray, list[tuple[int, int]], bool]:
    """Keep the complete shard at ``path`` if it holds ``examples``, else write it; its
    label value counts and image sizes, and whether it was kept (one task of a pool)."""
    kept = _read_back(path, [example.name for example in examples], spec)
    if kept is not None:
        return (*kept, True)
    return (*_write_shard(path, examples, spec), False)


def _write_shard(path: Path, examples: list[Example],
                 spec: DatasetSpec) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Write one shard under a temporary name, rename it when complete."""
    value_counts = np.zeros(256, dtype=np.int64)
    sizes = []

    def write(temporary: Path) -> None:
        with tf.io.TFRecordWriter(str(temporary)) as writer:
            for example in examples:
                record, label_map = encode_example(example, spec)
                writer.write(record)
                value_counts[:] += np.bincount(label_map.reshape(-1), minlength=256)
                sizes.append(label_map.shape)

    write_atomically(path, write)
    return value_counts, sizes


def encode_example(example: Example, spec: DatasetSpec) -> tuple[bytes, np.ndarray]:
    """Validate one pair and serialize it; also return its label map (for the counts)."""
    image_bytes = example.image_path.read_bytes()
    try:  # the header alone: the format, and Pillow's pixel limit before decoding
        with open_image(example.image_path, io.BytesIO(image_bytes)) as image:
            image_format = image.format
    except (OSError, SyntaxError) as error:
        raise ValueError(f"{example.image_path}: cannot decode the image: {error}") from None
    if unsupported_format(example.image_path, image_format):
        raise ValueError(unsupported_format(example.image_path, image_format))
    try:  # as the pipeline will decode it
        image_shape = (tf.io.decode_jpeg(image_bytes, channels=3, dct_method="INTEGER_ACCURATE")
                       if image_format == "JPEG" else
                       tf.io.decode_image(image_bytes, channels=3, expand_animations=False)).shape
    except (tf.errors.InvalidArgumentError, ValueError) as error:
        message = getattr(error, "message", str(error))
        raise ValueError(f"{example.image_path}: cannot decode the image: {message}") from None
    label_map = read_label(example.label_path)
    if label_map.shape != tuple(image_shape[:2]):
        raise ValueError(f"{example.label_path}: annotation is {label_map.shape[1]}x"
                         f"{label_map.shape[0]} but the image is {image_shape[1]}x"
                         f"{image_shape[0]} (width x height)")
    present = np.flatnonzero(np.bincount(label_map.reshape(-1), minlength=256))
    stray = [int(value) for value in present
             if value >= spec.num_classes and value != spec.ignore_label]
    if stray:
        raise ValueError(f"{example.label_path}: label value(s) {stray} not a class "
                         f"(0..{spec.num_classes - 1}) or the ignore label {spec.ignore_label}")
    buffer = io.BytesIO()
    Image.fromarray(label_map, mode="L").save(buffer, format="PNG")
    features = {
        "name": _bytes_feature(example.name.encode()),
        "image/encoded": _bytes_feature(image_bytes),
        "label/encoded": _bytes_feature(buffer.getvalue()),
        "height": _int_feature(label_map.shape[0]),
        "width": _int_feature(label_map.shape[1]),
    }
    record = tf.train.Example(features=tf.train.Features(feature=features))
    # Deterministic: the feature map in key order, not in the process's hash order, so
    # the same pairs give the same bytes in any process (and with any --workers).
    return record.SerializeToString(deterministic=True), label_map


def _read_back(path: Path, expected_names: list[str],
               spec: DatasetSpec) -> tuple[np.ndarray, list[tuple[int, int]]] | None:
    """Counts and sizes of a complete shard holding exactly ``expected_names``, else None."""
    if not path.is_file():
        return None
    value_counts = np.zeros(256, dtype=np.int64)
    sizes, names = [], []
    try:
        for serialized in tf.data.TFRecordDataset(str(path)):
            parsed = tf.io.parse_single_example(serialized, FEATURES)
            names.append(parsed["name"].numpy().decode())
            with Image.open(io.BytesIO(parsed["label/encoded"].numpy())) as label_image:
                label_map = np.array(label_image, dtype=np.uint8)
            value_counts += np.bincount(label_map.reshape(-1), minlength=256)
            sizes.append(label_map.shape)
    except (tf.errors.OpError, OSError, ValueError):
        return None
    stray = np.flatnonzero(value_counts[spec.num_classes:]) + spec.num_classes
    if names != expected_names or set(stray.tolist()) - {spec.ignore_label}:
        return None
    return value_counts, sizes


def _names_checksum(names: list[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _bytes_feature(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


# --------------------------------------------------------------------------- reading


__all__ = ["encode_example", "prepare_records"]
