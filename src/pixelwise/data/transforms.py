"""Paired transforms: image and label map changed together, labels by nearest neighbour only.

Each transform is called as ``transform(image, label_map, draws) -> (image, label_map)``,
where ``draws`` holds its ``num_draws`` uniforms in [0, 1); ``Compose`` chains transforms
and hands each its own slice of one draw vector, so a stateless seed fixes every choice:

    policy = AUGMENTATION_POLICIES["deeplab"](size=(384, 384), ignore_label=255)
    draws = tf.random.stateless_uniform([policy.num_draws], seed)
    image, label_map = policy(image, label_map, draws)

Images come out float32 RGB in 0..255; labels keep their dtype and values (resized by
nearest neighbour, padded with the ignore label), so no new label value ever appears.
Padding is at the bottom and right, with the ImageNet mean colour ``MEAN_RGB``.

The training policies (``augment`` of ``make_dataset``), compositions at the end of this
file: "textbook" (``zoom_crop_policy``), "deeplab" (``scale_pad_crop_policy``) and "none"
(``resize_policy``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol, Sequence

import numpy as np
import tensorflow as tf

# ImageNet mean colour on the 0..255 scale (what Keras's ResNet preprocessing subtracts):
# padding with it pads with zeros after the backbone's preprocessing.
MEAN_RGB = (123.68, 116.779, 103.939)
ZOOM_RANGE = (1.0, 1.25)
DEEPLAB_SCALES = (0.5, 2.0)
HUE_DELTA = 0.1
BRIGHTNESS_DELTA = 0.1
CONTRAST_RANGE = (0.8, 1.2)


class PairedTransform(Protocol):
    """Changes an image and its label map together; ``num_draws`` uniforms pick the amounts."""

    num_draws: int

    def __call__(self, image: tf.Tensor, label_map: tf.Tensor,
                 draws: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]: ...


# --------------------------------------------------------------------------- pair helpers


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


def draw_int(draw: tf.Tensor, limit: tf.Tensor) -> tf.Tensor:
    """A uniform integer in 0..limit from a uniform draw in [0, 1)."""
    return tf.minimum(tf.cast(draw * tf.cast(limit + 1, tf.float32), tf.int32), limit)


# --------------------------------------------------------------------------- transforms


@dataclass(frozen=True)
class Resize:
    """Resize both to ``size`` (height, width)."""

    size: tuple[int, int]
    num_draws: ClassVar[int] = 0

    def __call__(self, image, label_map, draws=None):
        return resize_pair(image, label_map, self.size)


@dataclass(frozen=True)
class PadToMultiple:
    """Pad both at the bottom and right to the next multiple of ``multiple`` per side."""

    multiple: int
    ignore_label: int
    num_draws: ClassVar[int] = 0

    def __call__(self, image, label_map, draws=None):
        shape = tf.shape(label_map)
        padded = (shape + self.multiple - 1) // self.multiple * self.multiple
        return pad_pair(image, label_map, padded[0], padded[1], self.ignore_label)


@dataclass(frozen=True)
class RandomZoomCrop:
    """With ``probability``, a random window of 1/zoom of each side, zoom uniform in
    ``zoom_range``; otherwise the whole pair. Draws: choice, zoom, top, left.

    Followed by ``Resize(size)`` this enlarges by the zoom and crops ``size``, the same view
    up to rounding the window to whole pixels, without a large float intermediate.
    """

    zoom_range: tuple[float, float] = ZOOM_RANGE
    probability: float = 0.5
    num_draws: ClassVar[int] = 4

    def __call__(self, image, label_map, draws):
        choice, zoom_draw, top_draw, left_draw = tf.unstack(draws)
        low, high = self.zoom_range
        zoom = tf.where(choice < self.probability, low + zoom_draw * (high - low), 1.0)
        window = tf.maximum(
            tf.cast(tf.round(tf.cast(tf.shape(label_map), tf.float32) / zoom), tf.int32), 1)
        shape = tf.shape(label_map)
        top = draw_int(top_draw, shape[0] - window[0])
        left = draw_int(left_draw, shape[1] - window[1])
        image = tf.slice(image, [top, left, 0], [window[0], window[1], 3])
        label_map = tf.slice(label_map, [top, left], [window[0], window[1]])
        return image, label_map


@dataclass(frozen=True)
class RandomScale:
    """Resize both by a factor uniform in ``scale_range`` (each side rounded, at least 1)."""

    scale_range: tuple[float, float] = DEEPLAB_SCALES
    num_draws: ClassVar[int] = 1

    def __call__(self, image, label_map, draws):
        low, high = self.scale_range
        scale = low + draws[0] * (high - low)
        scaled = tf.maximum(tf.cast(tf.round(tf.cast(tf.shape(label_map), tf.float32) * scale),
                                    tf.int32), 1)
        return resize_pair(image, label_map, scaled)


@dataclass(frozen=True)
class RandomCrop:
    """A random ``size`` window of both; a side shorter than ``size`` is padded at the
    bottom or right (mean colour, ``ignore_label``). Draws: top, left."""

    size: tuple[int, int]
    ignore_label: int
    num_draws: ClassVar[int] = 2

    def __call__(self, image, label_map, draws):
        height, width = self.size
        shape = tf.shape(label_map)
        top = draw_int(draws[0], tf.maximum(shape[0], height) - height)
        left = draw_int(draws[1], tf.maximum(shape[1], width) - width)
        # Padding is at the bottom and right, so cropping first and padding the (smaller)
        # window gives the same pixels as padding the whole image, for less work.
        image = image[top:top + height, left:left + width]
        label_map = label_map[top:top + height, left:left + width]
        return pad_pair(image, label_map, height, width, self.ignore_label)


@dataclass(frozen=True)
class RandomFlip:
    """Mirror both left to right with ``probability``."""

    probability: float = 0.5
    num_draws: ClassVar[int] = 1

    def __call__(self, image, label_map, draws):
        return tf.cond(draws[0] < self.probability,
                       lambda: (tf.reverse(image, [1]), tf.reverse(label_map, [1])),
                       lambda: (image, label_map))


@dataclass(frozen=True)
class ColorJitter:
    """The image's hue, brightness and contrast (``jitter_colors``); the label unchanged."""

    hue_delta: float = HUE_DELTA
    brightness_delta: float = BRIGHTNESS_DELTA
    contrast_range: tuple[float, float] = CONTRAST_RANGE
    num_draws: ClassVar[int] = 3

    def __call__(self, image, label_map, draws):
        return jitter_colors(tf.cast(image, tf.float32), draws, hue_delta=self.hue_delta,
                             brightness_delta=self.brightness_delta,
                             contrast_range=self.contrast_range), label_map


@dataclass(frozen=True)
class SpareDraws:
    """Changes nothing and uses ``num_draws`` draws, so the transforms after it get the draws
    a policy has always given them (the same seed, the same crops)."""

    num_draws: int

    def __call__(self, image, label_map, draws=None):
        return image, label_map


@dataclass(frozen=True)
class Compose:
    """The transforms in order, each given the next ``num_draws`` of the draws."""

    transforms: tuple[PairedTransform, ...]

    @property
    def num_draws(self) -> int:
        return sum(transform.num_draws for transform in self.transforms)

    def __call__(self, image, label_map, draws):
        start = 0
        for transform in self.transforms:
            image, label_map = transform(image, label_map,
                                         draws[start:start + transform.num_draws])
            start += transform.num_draws
        return image, label_map


# --------------------------------------------------------------------------- colour


def jitter_colors(image: tf.Tensor, draws: tf.Tensor, *, hue_delta: float = HUE_DELTA,
                  brightness_delta: float = BRIGHTNESS_DELTA,
                  contrast_range: tuple[float, float] = CONTRAST_RANGE) -> tf.Tensor:
    """Hue, brightness and contrast jitter of a float 0..255 RGB image [H, W, 3], clipped
    to 0..255; ``draws``, 3 uniforms in [0, 1), pick the amounts.

    Hue turns the chroma plane of YIQ by up to ``hue_delta`` of a turn (luma kept), the fast
    stand-in for an HSV hue shift that TensorFlow's ``random_hsv_in_yiq`` used; brightness
    adds up to ``brightness_delta`` (of the 0..255 range); contrast scales each channel's
    distance from its mean by a factor in ``contrast_range``, as
    ``tf.image.adjust_contrast`` does. The three compose into one affine colour map, applied
    in one fused pass plus the clip.
    """
    hue_draw, brightness_draw, contrast_draw = tf.unstack(draws)
    hue_angle = 2 * np.pi * hue_delta * (2.0 * hue_draw - 1.0)
    brightness = 255.0 * brightness_delta * (2.0 * brightness_draw - 1.0)
    low, high = contrast_range
    contrast = low + contrast_draw * (high - low)
    shape = tf.shape(image)
    # Channel means summing rows first: a fraction of reduce_mean's time over [H, W, 3].
    means = tf.reduce_sum(tf.reduce_sum(image, axis=0), axis=0) / tf.cast(
        shape[0] * shape[1], tf.float32)
    matrix, offset = color_jitter_transform(hue_angle, brightness, contrast, means)
    # The colour map as a 1x1 convolution with bias and ReLU: one fused kernel, cheaper
    # than a [H*W, 3] x [3, 3] matmul and a separate bias pass.
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


# --------------------------------------------------------------------------- policies


def zoom_crop_policy(size: tuple[int, int], ignore_label: int) -> Compose:
    """``augment="textbook"``, pixelwise's default recipe: half the time a zoom of 1-1.25x
    and a ``size`` crop, otherwise a plain resize; then a flip and the colour jitter."""
    return Compose((RandomZoomCrop(ZOOM_RANGE, probability=0.5), Resize(size), RandomFlip(),
                    ColorJitter()))


def scale_pad_crop_policy(size: tuple[int, int], ignore_label: int) -> Compose:
    """``augment="deeplab"``: DeepLab v3's training augmentation (Chen et al. 2017,
    arXiv:1706.05587, section 4.1: scale 0.5-2.0, crop, left-right flip), plus the jitter."""
    return Compose((RandomScale(DEEPLAB_SCALES), RandomCrop(size, ignore_label),
                    SpareDraws(1), RandomFlip(), ColorJitter()))


def resize_policy(size: tuple[int, int], ignore_label: int) -> Compose:
    """``augment="none"``: resize to ``size`` only, as evaluation does."""
    return Compose((Resize(size),))


AUGMENTATION_POLICIES: dict[str, Callable[[tuple[int, int], int], Compose]] = {
    "textbook": zoom_crop_policy,
    "deeplab": scale_pad_crop_policy,
    "none": resize_policy,
}
AUGMENTS = tuple(AUGMENTATION_POLICIES)


def augment_example(example: dict, seed: tf.Tensor, *, size: tuple[int, int], augment: str,
                    ignore_label: int) -> dict:
    """A training example through the policy ``augment`` names (see AUGMENTATION_POLICIES).

    ``seed`` is a stateless seed (int64 [2]): the same seed gives the same result. Returns
    {"name", "image": float32 [*size, 3], "label": uint8 [*size]}.
    """
    policy = AUGMENTATION_POLICIES[augment](size, ignore_label)
    draws = tf.random.stateless_uniform([policy.num_draws], seed)
    image, label_map = policy(example["image"], example["label"], draws)
    return {"name": example["name"], "image": tf.ensure_shape(image, [*size, 3]),
            "label": tf.ensure_shape(label_map, list(size))}


__all__ = ["AUGMENTATION_POLICIES", "AUGMENTS", "BRIGHTNESS_DELTA", "CONTRAST_RANGE",
           "ColorJitter", "Compose", "DEEPLAB_SCALES", "HUE_DELTA", "MEAN_RGB", "PadToMultiple",
           "PairedTransform", "RandomCrop", "RandomFlip", "RandomScale", "RandomZoomCrop",
           "Resize", "SpareDraws", "ZOOM_RANGE", "augment_example", "color_jitter_transform",
           "draw_int", "jitter_colors", "pad_pair", "resize_nearest", "resize_pair",
           "resize_policy", "scale_pad_crop_policy", "zoom_crop_policy"]
