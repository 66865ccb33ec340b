"""Backbones from keras.applications, made atrous, with their preprocessing inside.

A backbone is a flat functional model from RGB images (values 0..255) to its last-stage
features. It is built in three steps:

1. the keras.applications network (ResNet50, MobileNetV2, MobileNetV3-Large or -Small
   (:mod:`pixelwise.models.mobilenet_v3`), no top) on top of an
   :class:`~pixelwise.models.layers.ImageNetPreprocessing` layer, with ``weights`` None,
   ``"imagenet"`` (Keras downloads and caches the file) or a local weights file;
2. a clone whose layer configs trade the last stride-2 steps for dilation, so the features
   come out at the output stride (16 or 8) instead of 32 (DeepLab v3, section 3.1); the
   dilated convs become :class:`~pixelwise.models.layers.AtrousConv2D` /
   :class:`~pixelwise.models.layers.AtrousDepthwiseConv2D` (same config and weights);
3. every layer's weights copied from 1 to 2: strides and dilations do not change the shapes
   of the weights, so every pretrained weight survives (all three conv5 blocks of ResNet50,
   and conv4 at output stride 8).

The clone in step 2 also swaps every BatchNormalization for
:class:`~pixelwise.models.batchnorm.FusedBatchNormalization` (same config and weights,
TensorFlow's fused kernel) unless ``fused_batchnorm=False``.

The layers keep their keras.applications names (but two of MobileNetV3's unnamed
activations, which are taps), so taps are named in one table, :data:`FEATURE_LAYERS`, and
weights files from keras.applications load as they are.

``"tiny"`` (:mod:`pixelwise.models.tiny_backbone`) is a few strided convs with the same
taps and strides and no pretrained weights: for tests whose point is the shape logic.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras

from pixelwise.models.batchnorm import fused_class
from pixelwise.models.layers import AtrousConv2D, AtrousDepthwiseConv2D, ImageNetPreprocessing
from pixelwise.models.mobilenet_v3 import (
    MOBILENETV3_FEATURE_LAYERS,
    MOBILENETV3_IMAGENET_WIDTHS,
    MOBILENETV3_NAMES,
    MOBILENETV3_PREPROCESSING_MODE,
    TAP_ALTERNATIVES,
    mobilenetv3_application,
    mobilenetv3_edit,
    mobilenetv3_weights_filename,
)
from pixelwise.models.tiny_backbone import TINY_FEATURE_LAYERS, build_tiny_backbone

BACKBONE_NAMES = ("resnet50", "mobilenetv2", *MOBILENETV3_NAMES, "tiny")
# The backbones whose width a width_multiplier sets (keras.applications' alpha).
WIDTH_BACKBONES = ("mobilenetv2", *MOBILENETV3_NAMES)

# Per backbone: nominal stride -> name of the layer whose output is the last feature map
# at that stride in the unmodified network. After the atrous rebuild, the layers of nominal
# stride 32 (and 16 at output stride 8) run at the output stride instead.
FEATURE_LAYERS: dict[str, dict[int, str]] = {
    "resnet50": {
        2: "conv1_relu",
        4: "conv2_block3_out",
        8: "conv3_block4_out",
        16: "conv4_block6_out",
        32: "conv5_block3_out",
    },
    "mobilenetv2": {
        2: "expanded_conv_project_BN",
        4: "block_2_add",
        8: "block_5_add",
        16: "block_12_add",
        # The last inverted-residual block (320 x width channels), not the 1x1 Conv_1 to
        # 1280 channels after it: the DeepLab heads take the features before that expansion.
        32: "block_16_project_BN",
    },
    **MOBILENETV3_FEATURE_LAYERS,
    "tiny": TINY_FEATURE_LAYERS,
}

# The layers that take a dilation in the atrous rebuild, and what they become.
ATROUS_VERSIONS = {
    keras.layers.Conv2D: AtrousConv2D,
    keras.layers.DepthwiseConv2D: AtrousDepthwiseConv2D,
}

PREPROCESSING_MODE = {"resnet50": "caffe", "mobilenetv2": "tf",
                      **{name: MOBILENETV3_PREPROCESSING_MODE for name in MOBILENETV3_NAMES}}

MOBILENET_IMAGENET_WIDTHS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# Per backbone with a width: the widths keras.applications has ImageNet weights for.
IMAGENET_WIDTHS = {"mobilenetv2": MOBILENET_IMAGENET_WIDTHS,
                   **MOBILENETV3_IMAGENET_WIDTHS}
SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)

WeightsArg = str | os.PathLike | None


class WeightsUnavailableError(RuntimeError):
    """The ImageNet weights could not be downloaded (typically: the machine is offline)."""


def imagenet_weights_filename(backbone: str, width_multiplier: float = 1.0) -> str:
    """The file keras.applications downloads for ``backbone``'s no-top ImageNet weights."""
    if backbone == "resnet50":
        return "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    if backbone == "mobilenetv2":
        return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(width_multiplier)}_224_no_top.h5"
    if backbone in MOBILENETV3_NAMES:
        return mobilenetv3_weights_filename(backbone, width_multiplier)
    raise ValueError(_unknown_backbone_message(backbone))


def _unknown_backbone_message(backbone: str) -> str:
    return f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONE_NAMES)}"


def resnet50_dilation_rates(output_stride: int, multi_grid: Sequence[int] | None = None) -> dict[str, int]:
    """Dilation rate of every 3x3 conv of ResNet50's conv4 and conv5 stages.

    Output stride 16: conv5 at rate 2; 8: conv4 at rate 2 and conv5 at rate 4. A multi-grid
    ``(1, 2, 4)`` multiplies conv5's three blocks' rates by 1, 2 and 4 (DeepLab v3, 3.2).
    """
    rates = {}
    conv5_rate = {32: 1, 16: 2, 8: 4}[output_stride]
    conv4_rate = 2 if output_stride == 8 else 1
    grid = tuple(multi_grid) if multi_grid is not None else (1, 1, 1)
    for block in range(1, 7):
        rates[f"conv4_block{block}_2_conv"] = conv4_rate
    for block, unit_rate in zip(range(1, 4), grid):
        rates[f"conv5_block{block}_2_conv"] = conv5_rate * unit_rate
    return rates


def _resnet50_edit(output_stride: int, multi_grid: Sequence[int] | None) -> Callable[[dict], dict]:
    rates = resnet50_dilation_rates(output_stride, multi_grid)
    unstrided_stages = {32: (), 16: ("conv5",), 8: ("conv4", "conv5")}[output_stride]
    unstrided = {f"{stage}_block1_{unit}_conv" for stage in unstrided_stages for unit in (0, 1)}

    def edit(config: dict) -> dict:
        name = config["name"]
        if name in unstrided:
            config["strides"] = (1, 1)
        if rates.get(name, 1) != 1:
            config["dilation_rate"] = (rates[name], rates[name])
        return config

    return edit


def mobilenetv2_dilation_rates(output_stride: int) -> dict[int, int]:
    """Dilation rate of each inverted-residual block's 3x3 depthwise conv, by block id.

    The block whose stride-2 is removed keeps the rate before it (its taps stay one input
    pixel apart, as before); the blocks after it double it. Output stride 16: blocks 14-16
    at rate 2; 8: blocks 7-13 at rate 2 and 14-16 at rate 4 (as DeepLab's MobileNetV2).
    """
    rates = {block: 1 for block in range(17)}
    if output_stride <= 16:
        for block in range(14, 17):
            rates[block] = 2
    if output_stride == 8:
        for block in range(7, 14):
            rates[block] = 2
        for block in range(14, 17):
            rates[block] = 4
    return rates


def _mobilenetv2_edit(output_stride: int) -> Callable[[dict], dict]:
    rates = mobilenetv2_dilation_rates(output_stride)
    unstrided = {32: (), 16: (13,), 8: (6, 13)}[output_stride]

    def edit(config: dict) -> dict:
        name = config["name"]
        if not name.startswith("block_"):
            return config
        block = int(name.split("_")[1])
        if block in unstrided and name.endswith("_pad"):
            # The strided depthwise conv is 'valid' after an asymmetric pad; at stride 1 it
            # needs the symmetric pad of a 'same' 3x3 conv at its rate.
            config["padding"] = ((rates[block], rates[block]), (rates[block], rates[block]))
        elif name.endswith("_depthwise"):
            if block in unstrided:
                config["strides"] = (1, 1)
            if rates[block] != 1:
                config["dilation_rate"] = (rates[block], rates[block])
        return config

    return edit


def _check_weights_argument(weights: WeightsArg) -> str | None:
    if weights is None or weights == "imagenet":
        return weights
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: backbone weights file not found; pass an existing weights file "
            "(.weights.h5, or Keras's *_notop.h5 ImageNet file), 'imagenet', or None")
    return str(path)


def _keras_application(backbone: str, image: keras.KerasTensor, weights: str | None,
                       width_multiplier: float) -> keras.Model:
    if backbone == "resnet50":
        return keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=image)
    if backbone in MOBILENETV3_NAMES:
        return mobilenetv3_application(backbone, image, weights, width_multiplier)
    with warnings.catch_warnings():
        # With an unknown input size Keras loads the 224x224 ImageNet weights and says so.
        warnings.filterwarnings("ignore", message=".*input_shape.*is undefined or non-square")
        return keras.applications.MobileNetV2(
            include_top=False, weights=weights, input_tensor=image, alpha=width_multiplier)


def _pretrained_application(backbone: str, image: keras.KerasTensor, weights: str | None,
                            width_multiplier: float) -> keras.Model:
    """The keras.applications model with its weights, errors turned into ones that say the fix."""
    if weights == "imagenet":
        try:
            return _keras_application(backbone, image, weights, width_multiplier)
        except Exception as error:  # keras.utils.get_file raises a bare Exception offline
            filename = imagenet_weights_filename(backbone, width_multiplier)
            cache = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"
            raise WeightsUnavailableError(
                f"could not get the ImageNet weights for the {backbone} backbone ({filename}): "
                f"{error}. If this machine is offline, download {filename} where you can and "
                f"pass its path: backbone_weights=PATH in Python, --backbone-weights FILE on "
                f"the command line (or put it in {cache}, where Keras looks first); "
                "or use backbone_weights=None to start from random weights."
            ) from error
    if weights is None:
        return _keras_application(backbone, image, None, width_multiplier)
    try:
        return _keras_application(backbone, image, weights, width_multiplier)
    except (ValueError, OSError, KeyError) as error:
        raise ValueError(
            f"{weights}: could not load it into the {backbone} backbone "
            f"({_first_line(error)}). The file "
            f"must hold the weights of keras.applications' {backbone} without its top"
            + (f" at width_multiplier {width_multiplier}" if backbone in WIDTH_BACKBONES
               else "")
            + ", as written by save_weights() or Keras's *_notop.h5 ImageNet file."
        ) from error


def _first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of ``error``'s message, at most ``limit`` characters: Keras's
    weight-loading errors go on with every variable's values."""
    lines = str(error).strip().splitlines()
    first = lines[0].rstrip(":") if lines else type(error).__name__
    return first if len(first) <= limit else first[:limit - 3] + "..."


def build_backbone(
    backbone: str = "resnet50",
    *,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    output_stride: int = 16,
    weights: WeightsArg = None,
    multi_grid: Sequence[int] | None = None,
    width_multiplier: float = 1.0,
    fused_batchnorm: bool = True,
) -> keras.Model:
    """An atrous backbone: RGB 0..255 -> last-stage features at ``output_stride``.

    Args:
        backbone: ``"resnet50"``, ``"mobilenetv2"``, ``"mobilenetv3large"``,
            ``"mobilenetv3small"`` or ``"tiny"`` (tests; no weights).
        input_shape: ``(height, width, 3)``; None for sizes known only at run time.
        output_stride: 16 or 8 (atrous), or 32 (the unmodified network, as U-Net uses it).
        weights: None (random), ``"imagenet"`` (Keras downloads them; offline this raises
            :class:`WeightsUnavailableError`) or the path of a weights file of the
            keras.applications network without top.
        multi_grid: ResNet50 only: per-block multipliers of conv5's dilation rate, e.g.
            ``(1, 2, 4)``.
        width_multiplier: MobileNetV2 and V3 only: their ``alpha`` (channels x this).
        fused_batchnorm: replace keras.applications' BatchNormalization layers by
            :class:`~pixelwise.models.batchnorm.FusedBatchNormalization` (same config and
            weights; TensorFlow's fused kernel). False keeps Keras's own layer.

    Returns:
        A functional model whose layers keep the keras.applications names (see
        :data:`FEATURE_LAYERS` for the taps) plus ``"preprocessing"`` after the input.

    Example:
        >>> features = build_backbone("resnet50", output_stride=16)
        >>> features(np.zeros((1, 64, 64, 3))).shape  # (1, 4, 4, 2048)
    """
    if backbone not in BACKBONE_NAMES:
        raise ValueError(_unknown_backbone_message(backbone))
    if output_stride not in SUPPORTED_OUTPUT_STRIDES:
        raise ValueError(
            f"output_stride {output_stride} is not supported; choose 16 or 8 (32: no atrous)")
    check_input_shape(input_shape, 1, backbone)
    if backbone == "tiny":
        return _build_tiny(input_shape, output_stride, weights, multi_grid, width_multiplier,
                           fused_batchnorm)
    if backbone == "resnet50":
        if width_multiplier != 1.0:
            raise ValueError(_one_width_message(width_multiplier, backbone))
        if multi_grid is not None and (
                len(multi_grid) != 3 or any(int(unit) < 1 for unit in multi_grid)):
            raise ValueError(
                f"multi_grid {tuple(multi_grid)}: expected three positive rates "
                "for conv5's three blocks, e.g. (1, 2, 4)")
        edit = _resnet50_edit(output_stride, multi_grid)
    else:
        if multi_grid is not None:
            raise ValueError("multi_grid applies to the resnet50 backbone only")
        if width_multiplier <= 0:
            raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")
        widths = IMAGENET_WIDTHS[backbone]
        if weights == "imagenet" and float(width_multiplier) not in widths:
            raise ValueError(
                f"width_multiplier {width_multiplier}: ImageNet weights of {backbone} exist "
                f"for {', '.join(map(str, widths))} only")
        edit = _mobilenetv2_edit(output_stride) if backbone == "mobilenetv2" else None
    weights = _check_weights_argument(weights)

    image = keras.Input(shape=tuple(input_shape), name="image")
    preprocessed = ImageNetPreprocessing(PREPROCESSING_MODE[backbone], name="preprocessing")(image)
    pretrained = _pretrained_application(backbone, preprocessed, weights, width_multiplier)
    if edit is None:  # MobileNetV3: its edit reads the blocks' strides and kernels
        edit = mobilenetv3_edit(pretrained, output_stride)

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        config = edit(dict(layer.get_config()))
        if tuple(config.get("dilation_rate", (1, 1))) != (1, 1):
            return ATROUS_VERSIONS[type(layer)].from_config(config)
        layer_class = fused_class(type(layer)) if fused_batchnorm else type(layer)
        return layer_class.from_config(config)

    atrous = keras.models.clone_model(pretrained, clone_function=clone_layer)
    # Layers with weights keep their names (only weightless activations are renamed).
    for source in pretrained.layers:
        if source.weights:
            atrous.get_layer(source.name).set_weights(source.get_weights())
    # keras.applications gives the model a list of one input; one tensor is simpler to call.
    return keras.Model(atrous.inputs[0], atrous.outputs[0], name=backbone)


def _build_tiny(input_shape, output_stride: int, weights: WeightsArg,
                multi_grid: Sequence[int] | None, width_multiplier: float,
                fused_batchnorm: bool) -> keras.Model:
    if weights is not None:
        raise ValueError(f"weights {weights!r}: the tiny backbone has no pretrained weights; "
                         "use None (backbone_weights=None, --backbone-weights none)")
    if multi_grid is not None:
        raise ValueError("multi_grid applies to the resnet50 backbone only")
    if width_multiplier != 1.0:
        raise ValueError(_one_width_message(width_multiplier, "tiny"))
    image = keras.Input(shape=tuple(input_shape), name="image")
    return build_tiny_backbone(image, output_stride=output_stride,
                               fused_batchnorm=fused_batchnorm)


def _one_width_message(width_multiplier: float, backbone: str) -> str:
    others = ", ".join(name for name in WIDTH_BACKBONES if name != "mobilenetv2")
    return (f"width_multiplier {width_multiplier} applies to mobilenetv2 only (and {others}); "
            f"{backbone} has one width (1.0)")


def check_input_shape(input_shape: Sequence[int | None], multiple: int, model_name: str) -> None:
    """Raise if ``input_shape`` is not ``(H, W, 3)`` with H and W (where known) multiples of
    ``multiple``, the factor ``model_name`` downsamples by."""
    if len(input_shape) != 3 or input_shape[2] != 3:
        raise ValueError(f"input_shape {tuple(input_shape)}: expected (height, width, 3), RGB")
    for size in input_shape[:2]:
        if size is not None and (size <= 0 or size % multiple):
            nearest = max(multiple, round(size / multiple) * multiple)
            raise ValueError(
                f"input_shape {tuple(input_shape)}: {model_name} needs height and width that "
                f"are multiples of {multiple}; use e.g. {nearest}, or None for any size")


def feature_layer_names(backbone: str) -> dict[int, str]:
    """Nominal stride -> tap layer name for ``backbone`` (a copy of its row of FEATURE_LAYERS)."""
    if backbone not in FEATURE_LAYERS:
        raise ValueError(_unknown_backbone_message(backbone))
    return dict(FEATURE_LAYERS[backbone])


def backbone_features(backbone_model: keras.Model, backbone: str, stride: int) -> Any:
    """The symbolic output of ``backbone_model``'s tap at nominal ``stride`` (2, 4, ..., 32).

    A tap that a width leaves out of the network (MobileNetV3-Large's block-0 residual add)
    is its stand-in of :data:`~pixelwise.models.mobilenet_v3.TAP_ALTERNATIVES`."""
    names = feature_layer_names(backbone)
    if stride not in names:
        raise ValueError(f"{backbone} has taps at strides {sorted(names)}, not {stride}")
    name = names[stride]
    present = {layer.name for layer in backbone_model.layers}
    if name not in present and TAP_ALTERNATIVES.get(name) in present:
        name = TAP_ALTERNATIVES[name]
    return backbone_model.get_layer(name).output
