"""The tf.data input pipeline: (images, labels) batches from a VOC folder or prepared records.

    dataset = make_dataset("data/VOCdevkit/VOC2012", "train", batch_size=8,
                           input_size=384, training=True, seed=0)
    for images, labels in dataset:   # float32 [8, 384, 384, 3] in 0..255, uint8 [8, 384, 384]
        ...

Assembly only: data source (``data.sources``) -> decode (``data.decoding``) -> paired
transforms (``data.transforms``) -> cache -> batch -> prefetch. Everything is TensorFlow
ops, so the map runs in parallel without Python's interpreter lock.

Training augmentation (``augment``), applied to image and label with the same random draw
(the policies are compositions in ``data.transforms.AUGMENTATION_POLICIES``):

- ``"textbook"``: with probability 1/2, resize to ``input_size`` enlarged 1.0-1.25x and
  take a random ``input_size`` crop; otherwise resize to ``input_size``.
- ``"deeplab"``: random scale 0.5-2.0, pad the image with the ImageNet mean colour and the
  label with the ignore label up to ``input_size``, random ``input_size`` crop.
- ``"none"``: resize to ``input_size`` only (no flip, no colour jitter).

then (textbook and deeplab) a horizontal flip with probability 1/2, and on the image only
hue +-0.1 turn (a rotation in YIQ, see ``transforms.jitter_colors``), brightness +-0.1 (of
the range) and contrast 0.8-1.2, clipped. Labels are resized with nearest neighbour only
and padded with the ignore label, so no new value ever appears in them.

Evaluation (``training=False``): ``eval_resolution="resized"`` (the default) resizes to
``input_size``; ``"original"`` keeps each image at its size, pads it at the bottom and right
to a multiple of ``input_multiple`` with the mean colour and pads its label with the ignore
label, so metrics over the whole label follow the VOC protocol.

Randomness is seeded: ``seed``, with TensorFlow's global seed as tf.data's own seeds
always combine them (``tf.random.set_seed``; ``train`` sets it to the run's seed), fixes
the shuffle order and every crop, flip and jitter, so two datasets built with the same
arguments under the same global seed give identical batches; each new iteration (each
Keras epoch) draws a new order and new augmentations, also seed-determined.

``DataSource``, ``FolderSource``, ``open_source`` (data.sources), ``decode_image``,
``decode_label``, ``decode_example`` (data.decoding), ``MEAN_RGB``, ``AUGMENTS`` and
``augment_example`` (data.transforms) are re-exported here for existing imports.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from pixelwise.data.decoding import decode_example, decode_image, decode_label
from pixelwise.data.sources import DataSource, FolderSource, open_source
from pixelwise.data.transforms import (AUGMENTS, MEAN_RGB, PadToMultiple, Resize,
                                       augment_example)
from pixelwise.data.voc import DEFAULT_SPLIT_SEED
from pixelwise.io import round_up, size_pair

EVAL_RESOLUTIONS = ("resized", "original")
DEFAULT_SHUFFLE_BUFFER = 1024
AUTOTUNE = tf.data.AUTOTUNE


def evaluation_example(example: dict, *, size: tuple[int, int], eval_resolution: str,
                       input_multiple: int, ignore_label: int) -> dict:
    """An evaluation example: resized to ``size``, or padded to a multiple of the stride."""
    if eval_resolution == "resized":
        image, label_map = Resize(size)(example["image"], example["label"])
        image = tf.ensure_shape(image, [*size, 3])
        label_map = tf.ensure_shape(label_map, list(size))
    else:
        image, label_map = PadToMultiple(input_multiple, ignore_label)(example["image"],
                                                                      example["label"])
    return {"name": example["name"], "image": image, "label": label_map}


# --------------------------------------------------------------------------- the dataset


def make_dataset(source: str | Path | DataSource, split: str, *, batch_size: int,
                 input_size: int | tuple[int, int], training: bool, seed: int = 0,
                 augment: str = "textbook", eval_resolution: str = "resized",
                 input_multiple: int = 16, cache: str | Path | None = None,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                 split_seed: int = DEFAULT_SPLIT_SEED, drop_remainder: bool | None = None,
                 with_names: bool = False, autotune: bool = False) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of ``(images, labels)`` (``(images, labels, names)`` with
    ``with_names``): images float32 RGB [B, H, W, 3] in 0..255 (the model applies its
    backbone's preprocessing), labels uint8 [B, H, W] with the ignore label kept.

    Args:
        source: a VOC-layout folder (anything ``find_voc_root`` accepts), a records folder
            written by ``pixelwise data prepare`` (holds manifest.json), or an open source.
        split: train, val, test, val-full, trainval, train_aug, a list file, or (records)
            a prepared split's name.
        batch_size: examples per batch.
        input_size: training (and resized evaluation) size: an int (square) or (height, width).
        training: shuffle and augment (see ``augment``); otherwise list order (records:
            shards read round-robin), no augmentation.
        seed: fixes the shuffle order and every random augmentation (with TensorFlow's
            global seed, see the module docstring).
        augment: "textbook", "deeplab" or "none" (training only).
        eval_resolution: "resized" to ``input_size`` or "original" (evaluation only): each
            image padded at the bottom/right to a multiple of ``input_multiple``, its label
            padded with the ignore label. Images of different sizes cannot share a batch, so
            "original" batches by ``batch_size`` only when every image of the split pads to
            the same size and otherwise uses batches of one (with a warning if
            ``batch_size`` > 1); the height and width are then unknown statically.
        input_multiple: what the model's input must be a multiple of (its output
            stride), for "original" padding.
        cache: None, "memory", or a file path prefix: keep the decoded examples (evaluation:
            the resized/padded ones) after the first pass. A suffix naming the split and
            settings is added to a path so different datasets never share cache files.
        shuffle_buffer: examples held for shuffling records, or decoded examples when
            cached (a folder's file list is always shuffled whole).
        split_seed: the seed of the val/test halves.
        drop_remainder: drop a last, smaller batch (default: when training), which makes the
            batch size static.
        with_names: add the image names (string [B]) as a third element.
        autotune: let tf.data's autotuner set the parallelism and buffer sizes. Off by
            default: on this project's 2-core machine it left the cores idle 40% of the
            time in about half the passes (benchmarks/RESULTS.md); off, every AUTOTUNE
            value is the smaller of 16 and the cores the process may use.

    No ``repeat``: Keras iterates once per epoch, and each iteration reshuffles and draws
    new augmentations.
    """
    data_source = open_source(source)  # ``source``: a path or an open data source
    if isinstance(input_size, str):  # text sizes ("384", "360x480") are parsed by the CLI
        raise ValueError(f"input_size must be an int or (height, width), got {input_size!r}")
    size = size_pair(input_size, what="input_size")
    _check_choice("augment", augment, AUGMENTS)
    _check_choice("eval_resolution", eval_resolution, EVAL_RESOLUTIONS)
    for name, value in (("batch_size", batch_size), ("input_multiple", input_multiple),
                        ("shuffle_buffer", shuffle_buffer)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    spec = data_source.spec
    if drop_remainder is None:
        drop_remainder = training
    num_examples = data_source.num_examples(split, split_seed)
    if num_examples == 0:
        raise ValueError(f"split {split!r} of {source} has no examples")

    def read_and_decode(element):
        return decode_example(data_source.read(element), spec)

    if training:
        def augment_fn(example, random_value):
            return augment_example(example, tf.stack([random_value, seed]), size=size,
                                   augment=augment, ignore_label=spec.ignore_label)

        if cache is None:
            elements = data_source.elements(split, split_seed, shuffle_seed=seed,
                                            shuffle_buffer=shuffle_buffer)
            examples = tf.data.Dataset.zip(elements, _random_values(seed)).map(
                lambda element, random_value: augment_fn(read_and_decode(element), random_value),
                num_parallel_calls=AUTOTUNE, deterministic=True)
        else:
            decoded = data_source.elements(split, split_seed, shuffle_seed=None,
                                           shuffle_buffer=shuffle_buffer).map(
                read_and_decode, num_parallel_calls=AUTOTUNE, deterministic=True)
            decoded = _cache(decoded, cache, key=(split, split_seed, "train"))
            shuffled = decoded.shuffle(min(shuffle_buffer, num_examples), seed=seed,
                                       reshuffle_each_iteration=True)
            examples = tf.data.Dataset.zip(shuffled, _random_values(seed)).map(
                augment_fn, num_parallel_calls=AUTOTUNE, deterministic=True)
        batch_shape = size
    else:
        def prepare_fn(example):
            return evaluation_example(example, size=size, eval_resolution=eval_resolution,
                                      input_multiple=input_multiple,
                                      ignore_label=spec.ignore_label)

        examples = data_source.elements(split, split_seed, shuffle_seed=None,
                                        shuffle_buffer=shuffle_buffer).map(
            lambda element: prepare_fn(read_and_decode(element)),
            num_parallel_calls=AUTOTUNE, deterministic=True)
        if cache is not None:
            examples = _cache(examples, cache, key=(split, split_seed, eval_resolution, size,
                                                    input_multiple))
        batch_shape = size
        if eval_resolution == "original":
            batch_shape = _common_padded_size(data_source, split, split_seed, input_multiple)
            if batch_shape is None:
                if batch_size > 1:
                    warnings.warn(f"split {split!r}: images of several sizes at original "
                                  f"resolution; using batches of 1 instead of {batch_size}",
                                  stacklevel=2)
                batch_size = 1
    batches = examples.batch(batch_size, drop_remainder=drop_remainder,
                             num_parallel_calls=AUTOTUNE, deterministic=True)
    batch_dim = batch_size if drop_remainder else None
    height, width = batch_shape if batch_shape is not None else (None, None)

    def finish(batch):
        images = tf.ensure_shape(batch["image"], [batch_dim, height, width, 3])
        labels = tf.ensure_shape(batch["label"], [batch_dim, height, width])
        return (images, labels, batch["name"]) if with_names else (images, labels)

    options = tf.data.Options()
    options.autotune.enabled = autotune
    return batches.map(finish).prefetch(AUTOTUNE).with_options(options)


def _random_values(seed: int) -> tf.data.Dataset:
    """One int64 per element, the first half of its stateless seed (the second is ``seed``):
    seed-determined, and new for each iteration of the dataset."""
    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)


def _cache(dataset: tf.data.Dataset, cache: str | Path, key: tuple) -> tf.data.Dataset:
    if cache == "memory":
        return dataset.cache()
    path = Path(cache)
    if not path.parent.is_dir():
        raise ValueError(f"cache {path}: folder {path.parent} does not exist; create it or "
                         f"pass cache='memory'")
    suffix = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
    return dataset.cache(f"{path}-{Path(str(key[0])).name}-{suffix}")


def _common_padded_size(data_source: DataSource, split: str, split_seed: int,
                        input_multiple: int) -> tuple[int, int] | None:
    padded = {tuple(round_up(side, input_multiple) for side in size)
              for size in data_source.image_sizes(split, split_seed)}
    return padded.pop() if len(padded) == 1 else None


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


__all__ = ["AUGMENTS", "EVAL_RESOLUTIONS", "MEAN_RGB", "DataSource", "FolderSource",
           "open_source", "make_dataset", "decode_image", "decode_label", "decode_example",
           "augment_example", "evaluation_example"]
