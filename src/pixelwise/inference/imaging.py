"""Fitting an image to a model's input and mapping the answer back, in NumPy.

One idea, written once: the image goes at the top left of a canvas of the model's input
size; the rest of the canvas is the ImageNet mean colour (what training pads with).

- ``"pad"``: the image as it is; the canvas is the next multiple of the model's stride (a
  model of any input size) or the model's fixed input size (an image no larger than it).
  On a model of any input size, an image of more than ``max_pixels`` pixels is first
  scaled down (aspect kept) to fit ``max_pixels``: the model's memory grows with the
  canvas, so a 24-megapixel photo must not reach it whole. The answer is brought back to
  the full size like any other.
- ``"resize"``: the image resized to the input size (bilinear), filling the canvas.
- ``"letterbox"``: the image scaled to fit inside the input size, keeping its aspect ratio.

The model's answer on the canvas is cropped to the image's part and resized back to the
image's own size: class maps nearest-neighbour, logits and probabilities bilinear.
Resizing follows ``tf.image.resize`` (half-pixel centres, no antialiasing), so an export
sees what the model was trained on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pixelwise.data.pipeline import MEAN_RGB
from pixelwise.io import round_up

FIT_MODES = ("pad", "resize", "letterbox")
# 2 MiP: a full-HD frame (1920 x 1080) runs at its own size; larger photos are scaled down.
DEFAULT_MAX_PIXELS = 2048 * 1024


@dataclass(frozen=True)
class Fitting:
    """Where an image of ``image_size`` lands on a canvas of ``canvas_size``: at the top
    left, scaled to ``inner_size`` (all (height, width))."""

    image_size: tuple[int, int]
    inner_size: tuple[int, int]
    canvas_size: tuple[int, int]


def plan_fitting(image_size: Sequence[int], fit_mode: str, *,
                 input_size: Sequence[int] | None = None, input_multiple: int = 1,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Fitting:
    """The :class:`Fitting` of an image of ``image_size`` (see the module docstring).

    ``input_size``: the model's input (height, width); needed for "resize" and
    "letterbox", and for "pad" on a model of fixed size. ``input_multiple``: "pad" without
    ``input_size`` pads to a multiple of it. ``max_pixels``: "pad" without ``input_size``
    scales larger images down to at most this many pixels (None: never).
    """
    if fit_mode not in FIT_MODES:
        raise ValueError(f"fit_mode must be one of {', '.join(FIT_MODES)}, got {fit_mode!r}")
    height, width = (int(side) for side in image_size)
    if fit_mode == "pad" and input_size is None:
        inner = (height, width)
        if max_pixels is not None and height * width > max_pixels:
            scale = math.sqrt(max_pixels / (height * width))
            inner = (max(1, int(height * scale)), max(1, int(width * scale)))
        canvas = (round_up(inner[0], input_multiple), round_up(inner[1], input_multiple))
        return Fitting((height, width), inner, canvas)
    if input_size is None:
        raise ValueError(f"fit_mode {fit_mode!r} needs the model's input size (input_size)")
    input_height, input_width = (int(side) for side in input_size)
    if fit_mode == "pad":
        if height > input_height or width > input_width:
            raise ValueError(f"image of {height}x{width} is larger than the model's input "
                             f"{input_height}x{input_width}; fit it with 'resize' or "
                             f"'letterbox' instead of 'pad'")
        inner = (height, width)
    elif fit_mode == "resize":
        inner = (input_height, input_width)
    else:
        scale = min(input_height / height, input_width / width)
        inner = (max(1, min(input_height, round(height * scale))),
                 max(1, min(input_width, round(width * scale))))
    return Fitting((height, width), inner, (input_height, input_width))


def fit_images(images: np.ndarray, fitting: Fitting, dtype=np.uint8) -> np.ndarray:
    """Canvases [B, h, w, 3] of ``dtype`` for same-size images [B, H, W, 3].

    uint8 canvases hold the mean colour rounded and images resized by
    :func:`resize_bilinear`; float32 canvases the exact mean and images resized in float
    (:func:`resize_scores`), for models that take float pixels.
    """
    images = np.asarray(images)
    batch = images.shape[0]
    canvas_height, canvas_width = fitting.canvas_size
    inner_height, inner_width = fitting.inner_size
    if np.dtype(dtype) == np.uint8:
        mean = np.round(np.asarray(MEAN_RGB)).astype(np.uint8)
        inner = np.stack([resize_bilinear(image, fitting.inner_size) for image in images])
    else:
        mean = np.asarray(MEAN_RGB, dtype=np.float32)
        inner = images.astype(np.float32)
        if fitting.inner_size != fitting.image_size:
            inner = resize_scores(inner, fitting.inner_size)
    if fitting.canvas_size == fitting.inner_size:
        return inner.astype(dtype, copy=False)
    canvases = np.broadcast_to(mean, (batch, canvas_height, canvas_width, 3)).copy()
    canvases[:, :inner_height, :inner_width] = inner
    return canvases


def map_back(outputs: np.ndarray, fitting: Fitting) -> np.ndarray:
    """The model's outputs on the canvases cropped and resized to the images' size: class
    maps [B, h, w] (integers, nearest) or scores [B, h, w, C] (floats, bilinear)."""
    outputs = np.asarray(outputs)
    inner_height, inner_width = fitting.inner_size
    outputs = outputs[:, :inner_height, :inner_width]
    if fitting.inner_size == fitting.image_size:
        return outputs
    if outputs.ndim == 3:
        return np.stack([resize_nearest(output, fitting.image_size) for output in outputs])
    return resize_scores(outputs, fitting.image_size)


def check_rgb(images, *, batched: bool = False) -> np.ndarray:
    """``images`` as an array, checked to be RGB [H, W, 3] (or [B, H, W, 3] when
    ``batched``); another shape raises ValueError."""
    images = np.asarray(images)
    rank = 4 if batched else 3
    if images.ndim != rank or images.shape[-1] != 3:
        expected = "[B, H, W, 3]" if batched else "[H, W, 3]"
        raise ValueError(f"expected RGB image(s) {expected}, got shape {list(images.shape)}")
    return images


def as_uint8_images(images, *, batched: bool = False) -> np.ndarray:
    """RGB image(s) [H, W, 3] (or [B, H, W, 3] when ``batched``) as uint8; other dtypes
    are rounded and clipped to 0..255. Another shape raises ValueError."""
    images = check_rgb(images, batched=batched)
    if images.dtype != np.uint8:
        images = np.clip(np.round(images.astype(np.float64)), 0, 255).astype(np.uint8)
    return images


def class_map_of(scores) -> np.ndarray:
    """int32 class map: the argmax over the last axis of logits or probabilities."""
    return np.argmax(np.asarray(scores), axis=-1).astype(np.int32)


def _source_positions(output_size: int, input_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    positions = (np.arange(output_size, dtype=np.float64) + 0.5) * input_size / output_size - 0.5
    positions = np.clip(positions, 0.0, input_size - 1)
    lower = np.floor(positions).astype(np.int64)
    upper = np.minimum(lower + 1, input_size - 1)
    return lower, upper, (positions - lower).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of a uint8 image [H, W, C] to ``size`` (height, width), uint8.

    Half-pixel centres without antialiasing, as ``tf.image.resize`` (the training
    pipeline's resize) computes, rounded to uint8.
    """
    height, width = int(size[0]), int(size[1])
    if image.shape[:2] == (height, width):
        return image
    rows_low, rows_high, row_weight = _source_positions(height, image.shape[0])
    cols_low, cols_high, col_weight = _source_positions(width, image.shape[1])
    pixels = image.astype(np.float32)
    top, bottom = pixels[rows_low], pixels[rows_high]
    rows = top + (bottom - top) * row_weight[:, None, None]
    left, right = rows[:, cols_low], rows[:, cols_high]
    resized = left + (right - left) * col_weight[None, :, None]
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def resize_nearest(label_map: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of a class map [h, w] to ``size`` (half-pixel centres)."""
    height, width = int(size[0]), int(size[1])
    rows = np.minimum(((np.arange(height) + 0.5) * label_map.shape[0] / height).astype(np.int64),
                      label_map.shape[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * label_map.shape[1] / width).astype(np.int64),
                      label_map.shape[1] - 1)
    return label_map[rows[:, None], cols[None, :]]


def resize_scores(values: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of float values [B, h, w, C] (pixels, logits, probabilities) to
    ``size``, float32, by ``keras.ops.image.resize``."""
    from keras import ops

    resized = ops.image.resize(ops.convert_to_tensor(values, dtype="float32"),
                               (int(size[0]), int(size[1])))
    return np.asarray(ops.convert_to_numpy(resized), dtype=np.float32)


__all__ = ["DEFAULT_MAX_PIXELS", "FIT_MODES", "Fitting", "as_uint8_images", "check_rgb", "class_map_of", "fit_images",
           "map_back", "plan_fitting", "resize_bilinear", "resize_nearest", "resize_scores"]
