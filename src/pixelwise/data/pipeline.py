"""The tf.data input pipeline: (images, labels) batches from a VOC folder or prepared records.

    dataset = make_dataset("data/VOCdevkit/VOC2012", "train", batch_size=8,
                           input_size=384, training=True, seed=0)
    for images, labels in dataset:   # float32 [8, 384, 384, 3] in 0..255, uint8 [8, 384, 384]
        ...

Everything is TensorFlow ops, so the map runs in parallel without Python's interpreter
lock: JPEGs decode with ``tf.io.decode_jpeg`` (grayscale and CMYK files come out RGB, and
the accurate integer IDCT gives the same pixels as PIL); annotations are PNGs read as class
indices, equal to ``palette.read_label`` (a single-channel PNG directly; a palette PNG by
swapping its palette for a gray ramp, so the decoded values are the indices whatever the
palette's colours). Values that are neither a class nor the ignore label, images that are
not JPEGs, annotations that are not palette or 8-bit single-channel PNGs, and pairs of
different sizes stop the pipeline with an error naming the file.

Training augmentation (``augment``), applied to image and label with the same random draw:

- ``"textbook"``: with probability 1/2, resize to ``input_size`` enlarged 1.0-1.25x and
  take a random ``input_size`` crop; otherwise resize to ``input_size``.
- ``"deeplab"``: random scale 0.5-2.0, pad the image with the ImageNet mean colour and the
  label with the ignore label up to ``input_size``, random ``input_size`` crop.
- ``"none"``: resize to ``input_size`` only (no flip, no colour jitter).

then (textbook and deeplab) a horizontal flip with probability 1/2, and on the image only
hue +-0.1 turn (a rotation in YIQ, see ``jitter_colors``), brightness +-0.1 (of the range)
and contrast 0.8-1.2, clipped. Labels are resized with nearest neighbour only and padded
with the ignore label, so no new value ever appears in them.

Evaluation (``training=False``): ``eval_resolution="resized"`` resizes to ``input_size``
(the textbook's protocol); ``"original"`` keeps each image at its size, pads it at the
bottom and right to a multiple of ``output_stride`` with the mean colour and pads its label
with the ignore label, so metrics over the whole label follow the VOC protocol.

Randomness is stateless and seeded: ``seed`` fixes the shuffle order and every crop, flip
and jitter, so two datasets built with the same arguments give identical batches; each new
iteration (each Keras epoch) draws a new order and new augmentations, also seed-determined.
"""

from __future__ import annotations

import hashlib
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import tensorflow as tf
from PIL import Image

from pixelwise.data.palette import read_label
from pixelwise.data.spec import DatasetSpec
from pixelwise.data.voc import DEFAULT_SPLIT_SEED, VOCLayout, find_voc_root

AUGMENTS = ("textbook", "deeplab", "none")
EVAL_RESOLUTIONS = ("resized", "original")
# ImageNet mean colour on the 0..255 scale (what Keras's ResNet preprocessing subtracts):
# padding with it pads with zeros after the backbone's preprocessing.
MEAN_RGB = (123.68, 116.779, 103.939)
TEXTBOOK_ENLARGE = (1.0, 1.25)
DEEPLAB_SCALES = (0.5, 2.0)
HUE_DELTA = 0.1
BRIGHTNESS_DELTA = 0.1
CONTRAST_RANGE = (0.8, 1.2)
DEFAULT_SHUFFLE_BUFFER = 1024

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GRAY, PNG_PALETTE = 0, 3  # PNG colour types
AUTOTUNE = tf.data.AUTOTUNE


# --------------------------------------------------------------------------- sources


class DataSource(Protocol):
    """Where examples come from: a VOC-layout folder or a folder of prepared records.

    ``elements`` gives a cheap dataset of references (file names or serialized records),
    ``read`` turns one into ``{"name", "image_bytes", "label_bytes", "image_source",
    "label_source"}`` (the sources name the files in error messages).
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
    """A dataset folder in the VOC layout, read file by file."""

    layout: VOCLayout
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
        """{(height, width): number of images} over the split (reads only the JPEG headers)."""
        sizes: dict[tuple[int, int], int] = {}
        for example in self.layout.examples(split, split_seed):
            with Image.open(example.image_path) as image:
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


def open_source(source: str | Path | DataSource) -> DataSource:
    """A records folder (one holding manifest.json) or anything ``find_voc_root`` accepts."""
    if not isinstance(source, (str, Path)):
        return source
    from pixelwise.data import records

    path = Path(source)
    if (path / records.MANIFEST_FILENAME).is_file():
        return records.RecordsSource.open(path)
    return FolderSource(find_voc_root(path))


# --------------------------------------------------------------------------- decoding


def decode_image(contents: tf.Tensor, source: tf.Tensor | str = "image") -> tf.Tensor:
    """JPEG bytes -> uint8 RGB [H, W, 3]; grayscale and CMYK JPEGs come out RGB too.

    The accurate integer IDCT gives the same pixels as PIL. Other formats raise an error
    naming ``source`` (the VOC layout, and ``pixelwise data check``, want JPEGs).
    """
    check = _check(tf.io.is_jpeg(contents), source, ": not a JPEG image; re-save it as JPEG")
    with tf.control_dependencies([check]):
        image = tf.io.decode_jpeg(contents, channels=3, dct_method="INTEGER_ACCURATE")
    return tf.ensure_shape(image, [None, None, 3])


def decode_label(contents: tf.Tensor, spec: DatasetSpec,
                 source: tf.Tensor | str = "annotation") -> tf.Tensor:
    """Annotation PNG bytes -> uint8 class indices [H, W], equal to ``palette.read_label``.

    An 8-bit single-channel PNG holds the indices; so does a palette PNG, whose pixel
    values are read through a gray-ramp palette (see ``_palette_png_indices``). Other PNG
    kinds (RGB masks, 16-bit) and values that are neither a class nor ``spec.ignore_label``
    raise an error naming ``source``.
    """
    length = tf.strings.length(contents, unit="BYTE")
    header = tf.io.decode_raw(tf.strings.substr(contents, tf.minimum(24, length), 2), tf.uint8)
    is_png = tf.logical_and(tf.equal(tf.strings.substr(contents, 0, 8), PNG_SIGNATURE),
                            tf.equal(tf.size(header), 2))
    header = tf.pad(header, [[0, 2 - tf.size(header)]])
    bit_depth, color_type = header[0], header[1]
    is_gray8 = tf.logical_and(tf.equal(color_type, PNG_GRAY), tf.equal(bit_depth, 8))
    is_palette = tf.logical_and(tf.equal(color_type, PNG_PALETTE),
                                tf.reduce_any(tf.equal(bit_depth, [1, 2, 4, 8])))
    check = _check(
        tf.logical_and(is_png, tf.logical_or(is_gray8, is_palette)),
        source, ": not an 8-bit palette or single-channel PNG of class indices (PNG colour "
        "type ", color_type, ", bit depth ", bit_depth, "); RGB masks can be converted with "
        "`pixelwise data import-rgb-masks`")
    with tf.control_dependencies([check]):
        label_map = tf.cond(is_gray8,
                            lambda: tf.io.decode_png(contents, channels=1)[..., 0],
                            lambda: _palette_png_indices(contents, bit_depth, source))
    return check_label_values(label_map, spec, source)


def check_label_values(label_map: tf.Tensor, spec: DatasetSpec,
                       source: tf.Tensor | str = "annotation") -> tf.Tensor:
    """``label_map`` unchanged, after checking every value is a class or the ignore label."""
    def stray():
        return tf.logical_and(label_map >= spec.num_classes,
                              tf.not_equal(label_map, spec.ignore_label))

    if spec.ignore_label == 255:  # one pass: in uint8, 255 + 1 wraps round to 0
        valid = tf.reduce_max(label_map + tf.constant(1, tf.uint8)) <= spec.num_classes
    else:
        valid = tf.logical_not(tf.reduce_any(stray()))
    check = _check(
        valid, source, ": label value ",
        lambda: tf.reduce_max(tf.where(stray(), label_map, tf.zeros_like(label_map))),
        f" (the largest stray one) is not a class (0..{spec.num_classes - 1}) or the ignore "
        f"label {spec.ignore_label}")
    with tf.control_dependencies([check]):
        return tf.identity(label_map)


def _palette_png_indices(contents: tf.Tensor, bit_depth: tf.Tensor, source) -> tf.Tensor:
    """The pixel values (palette indices) of a palette PNG, in TensorFlow ops.

    ``tf.io.decode_png`` only gives a palette PNG's colours, so the file's PLTE chunk is
    swapped for a full gray ramp (entry i -> (i, i, i) for every index the bit depth
    allows, chunks precomputed with their CRCs) and the copy decoded as gray is the index
    map, whatever colours (or how few entries) the file's palette holds.
    """
    position, length = _png_palette_chunk(contents, source)
    size = tf.cast(tf.strings.length(contents, unit="BYTE"), tf.int64)
    chunk_end = tf.minimum(position + 12 + length, size)  # length, type, data, CRC
    recoloured = tf.strings.join([
        tf.strings.substr(contents, tf.constant(0, tf.int64), position),
        tf.gather(_GRAY_RAMP_CHUNKS, tf.cast(bit_depth, tf.int32)),
        tf.strings.substr(contents, chunk_end, size - chunk_end),
    ])
    return tf.io.decode_png(recoloured, channels=1)[..., 0]


def _png_palette_chunk(contents: tf.Tensor, source) -> tuple[tf.Tensor, tf.Tensor]:
    """(offset, data length) of the PLTE chunk of a PNG, found by walking its chunks."""
    size = tf.cast(tf.strings.length(contents, unit="BYTE"), tf.int64)

    def read_at(position, length):  # never past the end, whatever the file says
        position = tf.clip_by_value(tf.cast(position, tf.int64), 0, size)
        length = tf.minimum(tf.cast(length, tf.int64), size - position)
        return tf.strings.substr(contents, position, length)

    def chunk_length(position):
        length_bytes = tf.cast(tf.io.decode_raw(read_at(position, 4), tf.uint8), tf.int64)
        length_bytes = tf.pad(length_bytes, [[0, 4 - tf.size(length_bytes)]])
        return tf.reduce_sum(length_bytes * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64))

    def chunk_is(position, kind):
        return tf.logical_and(position + 8 <= size, tf.equal(read_at(position + 4, 4), kind))

    def keep_walking(position):
        return tf.logical_and(position + 8 <= size,
                              tf.logical_not(tf.logical_or(chunk_is(position, b"PLTE"),
                                                           chunk_is(position, b"IDAT"))))

    def next_chunk(position):
        return [position + 12 + chunk_length(position)]

    position = tf.while_loop(keep_walking, next_chunk, [tf.constant(8, tf.int64)])[0]
    length = chunk_length(position)
    valid = tf.logical_and(chunk_is(position, b"PLTE"),
                           tf.logical_and(tf.equal(length % 3, 0),
                                          tf.logical_and(length >= 3, length <= 768)))
    check = _check(valid, source, ": a palette PNG without a valid palette (PLTE chunk)")
    with tf.control_dependencies([check]):
        return tf.identity(position), tf.identity(length)


def _gray_ramp_chunks() -> list[bytes]:
    """Entry d: the PLTE chunk (length, type, data, CRC) of a gray ramp of 2**d entries for
    the palette bit depths d = 1, 2, 4, 8 (other entries empty)."""
    chunks = [b""] * 9
    for bit_depth in (1, 2, 4, 8):
        body = b"PLTE" + bytes(value for value in range(2 ** bit_depth) for _ in range(3))
        chunks[bit_depth] = ((len(body) - 4).to_bytes(4, "big") + body
                             + zlib.crc32(body).to_bytes(4, "big"))
    return chunks


_GRAY_RAMP_CHUNKS = _gray_ramp_chunks()


def _check(condition: tf.Tensor, *parts) -> tf.Tensor | tf.Operation | None:
    """An assertion that ``condition`` holds, for ``tf.control_dependencies``.

    Its message, ``parts`` joined (strings, numbers, shapes as HxW; a callable is called
    for its value), is only built when the assertion fails.
    """
    def text(part):
        if isinstance(part, str):
            return part
        part = tf.convert_to_tensor(part() if callable(part) else part)
        if part.dtype != tf.string:
            part = tf.strings.as_string(tf.cast(part, tf.int64))
        return tf.strings.reduce_join(part, separator="x") if part.shape.rank else part

    def fail():
        message = tf.strings.join([text(part) for part in parts])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.constant(False)

    if all(isinstance(part, (str, tf.Tensor)) and getattr(part, "dtype", tf.string) == tf.string
           for part in parts):  # a cheap message: no branch needed
        return tf.debugging.Assert(condition, [tf.strings.join(list(parts))])
    return tf.cond(condition, lambda: tf.constant(True), fail)


def decode_example(raw: dict, spec: DatasetSpec) -> dict:
    """``DataSource.read`` output -> {"name", "image": uint8 [H,W,3], "label": uint8 [H,W]}."""
    image = decode_image(raw["image_bytes"], raw["image_source"])
    label_map = decode_label(raw["label_bytes"], spec, raw["label_source"])
    same_size = tf.reduce_all(tf.equal(tf.shape(image)[:2], tf.shape(label_map)))
    check = _check(same_size, raw["label_source"], ": annotation is ",
                   lambda: tf.shape(label_map), " but the image ", raw["image_source"], " is ",
                   lambda: tf.shape(image)[:2], " (height x width)")
    with tf.control_dependencies([check]):
        return {"name": raw["name"], "image": tf.identity(image),
                "label": tf.identity(label_map)}


# --------------------------------------------------------------------------- geometry


def resize_pair(image: tf.Tensor, label_map: tf.Tensor,
                size: tf.Tensor | Sequence[int]) -> tuple[tf.Tensor, tf.Tensor]:
    """Image bilinear (float32 out), label nearest neighbour (values kept), to ``size``."""
    image = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")
    return image, resize_nearest(label_map, size)


def resize_nearest(label_map: tf.Tensor, size: tf.Tensor | Sequence[int]) -> tf.Tensor:
    """[H, W] -> ``size`` by nearest neighbour, the same pixels as ``tf.image.resize``'s
    "nearest" (half-pixel centres), as two gathers (several times faster on uint8)."""
    def source_indices(source_size, target_size):
        scale = tf.cast(source_size, tf.float32) / tf.cast(target_size, tf.float32)
        centres = (tf.range(target_size, dtype=tf.float32) + 0.5) * scale
        return tf.minimum(tf.cast(tf.floor(centres), tf.int32), source_size - 1)

    shape = tf.shape(label_map)
    rows = tf.gather(label_map, source_indices(shape[0], size[0]))
    return tf.transpose(tf.gather(tf.transpose(rows), source_indices(shape[1], size[1])))


def pad_pair(image: tf.Tensor, label_map: tf.Tensor, height: tf.Tensor, width: tf.Tensor,
             ignore_label: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Pad at the bottom and right to at least height x width: image with MEAN_RGB, label
    with ``ignore_label``."""
    shape = tf.shape(label_map)
    paddings = [[0, tf.maximum(height - shape[0], 0)], [0, tf.maximum(width - shape[1], 0)]]
    mean = tf.constant(MEAN_RGB, tf.float32)
    image = tf.pad(tf.cast(image, tf.float32) - mean, paddings + [[0, 0]]) + mean
    label_map = tf.pad(label_map, paddings, constant_values=ignore_label)
    return image, label_map


def crop_pair(image: tf.Tensor, label_map: tf.Tensor, height: int | tf.Tensor,
              width: int | tf.Tensor,
              top_draw: tf.Tensor, left_draw: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The same height x width window of both (at least that large); its offsets come
    from uniform draws in [0, 1)."""
    shape = tf.shape(label_map)
    top, left = _draw_int(top_draw, shape[0] - height), _draw_int(left_draw, shape[1] - width)
    image = tf.slice(image, [top, left, 0], [height, width, 3])
    label_map = tf.slice(label_map, [top, left], [height, width])
    return image, label_map


def _draw_int(draw: tf.Tensor, limit: tf.Tensor) -> tf.Tensor:
    """A uniform integer in 0..limit from a uniform draw in [0, 1)."""
    return tf.minimum(tf.cast(draw * tf.cast(limit + 1, tf.float32), tf.int32), limit)


def textbook_geometry(image: tf.Tensor, label_map: tf.Tensor, size: tuple[int, int],
                      draws: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Resize to ``size`` enlarged by TEXTBOOK_ENLARGE and crop ``size``, or plain resize,
    each with probability 1/2. ``draws``: 4 uniforms in [0, 1).

    Enlarging by ``scale`` and cropping ``size`` is done as cropping a random window of
    1/``scale`` of each side of the original and resizing it to ``size``: the same view up
    to rounding the window to whole pixels, without a large float intermediate (about a
    third less work on VOC-sized images).
    """
    choice, scale_draw, top_draw, left_draw = tf.unstack(draws)
    low, high = TEXTBOOK_ENLARGE
    scale = tf.where(choice < 0.5, low + scale_draw * (high - low), 1.0)
    window = tf.maximum(
        tf.cast(tf.round(tf.cast(tf.shape(label_map), tf.float32) / scale), tf.int32), 1)
    image, label_map = crop_pair(image, label_map, window[0], window[1], top_draw, left_draw)
    return resize_pair(image, label_map, size)


def deeplab_geometry(image: tf.Tensor, label_map: tf.Tensor, size: tuple[int, int],
                     draws: tf.Tensor, ignore_label: int) -> tuple[tf.Tensor, tf.Tensor]:
    """DeepLab's recipe: random scale in DEEPLAB_SCALES, pad (mean colour / ignore label)
    at the bottom and right to at least ``size``, random ``size`` crop. ``draws``: 4
    uniforms in [0, 1)."""
    scale_draw, top_draw, left_draw, _ = tf.unstack(draws)
    low, high = DEEPLAB_SCALES
    scale = low + scale_draw * (high - low)
    scaled = tf.maximum(tf.cast(tf.round(tf.cast(tf.shape(label_map), tf.float32) * scale),
                                tf.int32), 1)
    image, label_map = resize_pair(image, label_map, scaled)
    # Padding is at the bottom and right, so cropping first and padding the (smaller)
    # window gives the same pixels as padding the whole scaled image, for less work.
    height, width = size
    top = _draw_int(top_draw, tf.maximum(scaled[0], height) - height)
    left = _draw_int(left_draw, tf.maximum(scaled[1], width) - width)
    image = image[top:top + height, left:left + width]
    label_map = label_map[top:top + height, left:left + width]
    return pad_pair(image, label_map, height, width, ignore_label)


def augment_example(example: dict, seed: tf.Tensor, *, size: tuple[int, int], augment: str,
                    ignore_label: int) -> dict:
    """A training example: the geometry ``augment`` names, then (textbook, deeplab) a
    left-right flip of image and label with probability 1/2 and the image's colour jitter.

    ``seed`` is a stateless seed (int64 [2]): the same seed gives the same result. Returns
    {"name", "image": float32 [*size, 3], "label": uint8 [*size]}.
    """
    draws = tf.random.stateless_uniform([8], seed)
    image, label_map = example["image"], example["label"]
    if augment == "deeplab":
        image, label_map = deeplab_geometry(image, label_map, size, draws[:4], ignore_label)
    elif augment == "textbook":
        image, label_map = textbook_geometry(image, label_map, size, draws[:4])
    else:
        image, label_map = resize_pair(image, label_map, size)
    if augment != "none":
        image, label_map = tf.cond(
            draws[4] < 0.5, lambda: (tf.reverse(image, [1]), tf.reverse(label_map, [1])),
            lambda: (image, label_map))
        image = jitter_colors(image, draws[5:])
    return {"name": example["name"], "image": tf.ensure_shape(image, [*size, 3]),
            "label": tf.ensure_shape(label_map, list(size))}


def jitter_colors(image: tf.Tensor, draws: tf.Tensor) -> tf.Tensor:
    """Hue, brightness and contrast jitter of a float 0..255 RGB image [H, W, 3], clipped
    to 0..255; ``draws``, 3 uniforms in [0, 1), pick the amounts.

    Hue turns the chroma plane of YIQ by up to HUE_DELTA of a turn (luma kept), the fast
    stand-in for an HSV hue shift that TensorFlow's ``random_hsv_in_yiq`` used; brightness
    adds up to BRIGHTNESS_DELTA (of the 0..255 range); contrast scales each channel's
    distance from its mean by CONTRAST_RANGE, as ``tf.image.adjust_contrast`` does. The
    three compose into one affine colour map, one fused pass plus the clip: about 3x cheaper
    than ``tf.image.adjust_hue`` alone on a 384x384 crop.
    """
    hue_draw, brightness_draw, contrast_draw = tf.unstack(draws)
    hue_angle = 2 * np.pi * HUE_DELTA * (2.0 * hue_draw - 1.0)
    brightness = 255.0 * BRIGHTNESS_DELTA * (2.0 * brightness_draw - 1.0)
    low, high = CONTRAST_RANGE
    contrast = low + contrast_draw * (high - low)
    shape = tf.shape(image)
    # Channel means summing rows first: a fraction of reduce_mean's time over [H, W, 3].
    means = tf.reduce_sum(tf.reduce_sum(image, axis=0), axis=0) / tf.cast(
        shape[0] * shape[1], tf.float32)
    matrix, offset = color_jitter_transform(hue_angle, brightness, contrast, means)
    # The colour map as a 1x1 convolution with bias and ReLU, one fused kernel: the jitter
    # takes ~25% less time than with a [H*W, 3] x [3, 3] matmul and a bias pass.
    pixels = tf.nn.relu(tf.nn.bias_add(
        tf.nn.conv2d(image[tf.newaxis], tf.transpose(matrix)[tf.newaxis, tf.newaxis],
                     strides=1, padding="VALID"), offset))
    return tf.minimum(pixels[0], 255.0)


_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114],
                        [0.596, -0.274, -0.322],
                        [0.211, -0.523, 0.312]], dtype=np.float32)
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ).astype(np.float32)


def color_jitter_transform(hue_angle: tf.Tensor, brightness: tf.Tensor, contrast: tf.Tensor,
                           channel_means: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(matrix [3, 3], offset [3]) with out = matrix @ rgb + offset equal to: turn the hue
    by ``hue_angle`` radians in YIQ, add ``brightness``, then scale each channel's distance
    from its mean by ``contrast`` (``channel_means``: the input's per-channel means)."""
    cos, sin = tf.cos(hue_angle), tf.sin(hue_angle)
    zero, one = tf.zeros_like(cos), tf.ones_like(cos)
    rotation = tf.stack([tf.stack([one, zero, zero]), tf.stack([zero, cos, -sin]),
                         tf.stack([zero, sin, cos])])
    hue_matrix = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ
    # contrast((H x + b) - mean) + mean, with mean = H means + b, is c H x + (1 - c) H means + b
    matrix = contrast * hue_matrix
    offset = (1.0 - contrast) * tf.linalg.matvec(hue_matrix, channel_means) + brightness
    return matrix, offset


def evaluation_example(example: dict, *, size: tuple[int, int], eval_resolution: str,
                       output_stride: int, ignore_label: int) -> dict:
    """An evaluation example: resized to ``size``, or padded to a multiple of the stride."""
    if eval_resolution == "resized":
        image, label_map = resize_pair(example["image"], example["label"], size)
        image = tf.ensure_shape(image, [*size, 3])
        label_map = tf.ensure_shape(label_map, list(size))
    else:
        shape = tf.shape(example["label"])
        padded = (shape + output_stride - 1) // output_stride * output_stride
        image, label_map = pad_pair(example["image"], example["label"], padded[0], padded[1],
                                    ignore_label)
    return {"name": example["name"], "image": image, "label": label_map}


# --------------------------------------------------------------------------- the dataset


def make_dataset(source: str | Path | DataSource, split: str, *, batch_size: int,
                 input_size: int | tuple[int, int], training: bool, seed: int = 0,
                 augment: str = "textbook", eval_resolution: str = "resized",
                 output_stride: int = 16, cache: str | Path | None = None,
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
        seed: fixes the shuffle order and every random augmentation.
        augment: "textbook", "deeplab" or "none" (training only).
        eval_resolution: "resized" to ``input_size`` or "original" (evaluation only): each
            image padded at the bottom/right to a multiple of ``output_stride``, its label
            padded with the ignore label. Images of different sizes cannot share a batch, so
            "original" batches by ``batch_size`` only when every image of the split pads to
            the same size and otherwise uses batches of one (with a warning if
            ``batch_size`` > 1); the height and width are then unknown statically.
        output_stride: the model's output stride, for "original" padding.
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
    data_source = open_source(source)
    size = _size_pair(input_size)
    _check_choice("augment", augment, AUGMENTS)
    _check_choice("eval_resolution", eval_resolution, EVAL_RESOLUTIONS)
    for name, value in (("batch_size", batch_size), ("output_stride", output_stride),
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
        prepare_fn = _bind(evaluation_example, size=size, eval_resolution=eval_resolution,
                           output_stride=output_stride, ignore_label=spec.ignore_label)
        examples = data_source.elements(split, split_seed, shuffle_seed=None,
                                        shuffle_buffer=shuffle_buffer).map(
            lambda element: prepare_fn(read_and_decode(element)),
            num_parallel_calls=AUTOTUNE, deterministic=True)
        if cache is not None:
            examples = _cache(examples, cache, key=(split, split_seed, eval_resolution, size,
                                                    output_stride))
        batch_shape = size
        if eval_resolution == "original":
            batch_shape = _common_padded_size(data_source, split, split_seed, output_stride)
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
                        output_stride: int) -> tuple[int, int] | None:
    padded = {tuple(-(-side // output_stride) * output_stride for side in size)
              for size in data_source.image_sizes(split, split_seed)}
    return padded.pop() if len(padded) == 1 else None


def _size_pair(input_size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (input_size, input_size) if isinstance(input_size, (int, np.integer)) else input_size
    try:
        height, width = (int(side) for side in pair)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be an int or (height, width), got {input_size!r}")
    if height < 1 or width < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return height, width


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def _bind(function: Callable, **settings) -> Callable:
    return lambda *arguments: function(*arguments, **settings)


__all__ = ["AUGMENTS", "EVAL_RESOLUTIONS", "MEAN_RGB", "DataSource", "FolderSource",
           "open_source", "make_dataset", "decode_image", "decode_label", "decode_example",
           "augment_example", "evaluation_example"]
