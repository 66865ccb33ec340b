"""Segmentation models, chosen by name.

    >>> from pixelwise.models import build_model
    >>> model = build_model("deeplabv3", num_classes=21, backbone_weights="imagenet")

Every model takes RGB images with values 0..255 ([B, H, W, 3], any float or integer type
Keras accepts) and returns float32 logits [B, H, W, num_classes]; the backbone's own
preprocessing is a layer inside the model, so saved and exported models take raw images.
The models are plain functional Keras models without Lambda layers: ``model.save(
"x.keras")`` and :func:`load_model` (``safe_mode`` on) give back identical outputs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from pixelwise.models.backbones import (
    BACKBONE_NAMES,
    FEATURE_LAYERS,
    WeightsUnavailableError,
    build_backbone,
)
from pixelwise.models.batchnorm import FusedBatchNormalization
from pixelwise.models.deeplabv3 import build_deeplabv3, build_deeplabv3plus
from pixelwise.models.lraspp import build_lraspp
from pixelwise.models.registry import (
    MODEL_NAMES,
    MODELS,
    ModelEntry,
    input_multiple,
    model_entry,
)
from pixelwise.models.summary import ModelSize, count_multiply_adds, measure_model
from pixelwise.models.unet import build_unet

# Kept for callers that read it here; the registry holds the strides.
DEFAULT_OUTPUT_STRIDE = {name: entry.default_output_stride for name, entry in MODELS.items()}


def build_model(
    name: str,
    *,
    num_classes: int,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    backbone: str | None = None,
    output_stride: int | None = None,
    backbone_weights: str | os.PathLike | None = None,
    multi_grid: Sequence[int] | None = None,
    width_multiplier: float = 1.0,
    dropout: float = 0.1,
    fused_batchnorm: bool = True,
    **options: Any,
) -> keras.Model:
    """Build the segmentation model ``name`` (one of :data:`MODEL_NAMES`), through the
    registry (:mod:`pixelwise.models.registry`).

    Args:
        name: ``"deeplabv3"``, ``"deeplabv3plus"``, ``"unet"`` or ``"lraspp"``.
        num_classes: logit channels.
        input_shape: ``(H, W, 3)``, None for sizes known at run time; H and W must be
            multiples of the model's input multiple (:func:`input_multiple`).
        backbone: ``"resnet50"``, ``"mobilenetv2"``, ``"mobilenetv3large"``,
            ``"mobilenetv3small"`` or ``"tiny"`` (for tests, no weights); None: the model's
            own (:func:`~pixelwise.models.registry.default_backbone`: resnet50, LR-ASPP's
            mobilenetv3large).
        output_stride: DeepLab, LR-ASPP: 16 (default) or 8. U-Net: its encoder runs at 32
            (the default); other values are refused.
        backbone_weights: None (random), ``"imagenet"`` (downloaded by Keras; offline raises
            :class:`WeightsUnavailableError`) or the path of a weights file.
        multi_grid: DeepLab + ResNet50: conv5 rate multipliers, e.g. ``(1, 2, 4)``.
        width_multiplier: the MobileNets' alpha.
        dropout: dropout rate before the classifier stage.
        fused_batchnorm: every BatchNormalization layer (backbone and head) is a
            :class:`~pixelwise.models.batchnorm.FusedBatchNormalization`: Keras's layer,
            weights and config, computed by TensorFlow's fused kernel (faster on CPU).
            False builds Keras's own ``BatchNormalization``; weights move between the two.
        **options: passed to the builder: ``aspp_filters``, ``aspp_rates`` (DeepLab),
            ``low_level_filters``, ``decoder_filters`` (DeepLab v3+, U-Net),
            ``branch_filters`` (LR-ASPP); one the builder does not take is refused.
    """
    entry = model_entry(name)
    if backbone is None:
        backbone = entry.default_backbone
    if backbone not in entry.backbones:
        raise ValueError(
            f"unknown backbone {backbone!r}; choose one of {', '.join(entry.backbones)}")
    stride = entry.output_stride(output_stride)
    if multi_grid is not None and not entry.takes_multi_grid:
        raise ValueError("multi_grid applies to the DeepLab models only")
    parameters = inspect.signature(entry.builder).parameters
    takes_any = any(item.kind is inspect.Parameter.VAR_KEYWORD for item in parameters.values())
    unknown = [] if takes_any else sorted(set(options) - set(parameters))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an option of {name}")
    arguments = dict(
        num_classes=num_classes, input_shape=tuple(input_shape), backbone=backbone,
        backbone_weights=backbone_weights, width_multiplier=width_multiplier, dropout=dropout,
        fused_batchnorm=fused_batchnorm, **options)
    if entry.takes_output_stride:
        arguments["output_stride"] = stride
    if entry.takes_multi_grid:
        arguments["multi_grid"] = multi_grid
    return entry.builder(**arguments)


def summarize_model(name: str, *, input_size: Sequence[int], **options: Any) -> list[str]:
    """Lines describing model ``name`` (parameters, multiply-adds) for images of
    ``input_size``; a size off the model's stride (a camera's 360 x 480 at 16) is measured
    at the padded size the model runs at (as predict and export pad), and says so.
    ``options`` go to :func:`build_model`."""
    from pixelwise.io import round_up
    from pixelwise.models.registry import input_multiple

    height, width = (int(side) for side in input_size)
    multiple = input_multiple(name, options.get("output_stride"))
    padded = (round_up(height, multiple), round_up(width, multiple))
    model = build_model(name, input_shape=(*padded, 3), **options)
    lines = measure_model(model, padded).lines()
    if padded != (height, width):
        lines.insert(1, f"padded          {height} x {width} runs as {padded[0]} x {padded[1]} "
                        f"(multiples of the stride, {multiple})")
    return lines


def load_model(path: str | os.PathLike, *, compile: bool = True) -> keras.Model:
    """Load a model saved with ``model.save(path)`` (``.keras``), with safe mode on."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such model file; save one with model.save('x.keras')")
    if path.suffix != ".keras":
        raise ValueError(f"{path}: expected a .keras file written by model.save()")
    return keras.saving.load_model(path, compile=compile, safe_mode=True)


__all__ = [
    "BACKBONE_NAMES",
    "FEATURE_LAYERS",
    "FusedBatchNormalization",
    "MODELS",
    "MODEL_NAMES",
    "ModelEntry",
    "ModelSize",
    "WeightsUnavailableError",
    "build_backbone",
    "build_deeplabv3",
    "build_deeplabv3plus",
    "build_lraspp",
    "build_model",
    "build_unet",
    "count_multiply_adds",
    "input_multiple",
    "load_model",
    "measure_model",
    "model_entry",
]
