"""DeepLab v3 (Chen et al. 2017) and DeepLab v3+ (Chen et al. 2018) on an atrous backbone.

DeepLab v3, as in the paper (section 3.3):

    image (RGB 0..255) -> preprocessing -> atrous backbone (output stride 16 or 8)
      -> ASPP: 1x1 conv | 3x3 conv rate 6 | rate 12 | rate 18 (doubled at stride 8)
               | image pooling: global average -> 1x1 conv -> BN -> ReLU -> resize
               (every conv 256 filters + BN + ReLU)
      -> concat -> 1x1 conv 256 + BN + ReLU -> dropout -> 1x1 classifier
      -> bilinear resize to the input's runtime size = logits (float32)

DeepLab v3+ adds a decoder: the ASPP output is resized to the 1/4-resolution low-level
features (projected to 48 channels), concatenated with them and refined by two 3x3 convs
before the classifier.

Every resize follows the runtime size of a tensor (no size is hard-coded), so the models
work for any input whose height and width are multiples of the output stride, square or
not, and for models built with ``input_shape=(None, None, 3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras

from pixelwise.models.backbones import (
    WeightsArg,
    backbone_features,
    build_backbone,
    check_input_shape,
)
from pixelwise.models.layers import ResizeToMatch, conv_bn_relu, separable_conv_bn_relu

DEEPLAB_OUTPUT_STRIDES = (8, 16)
DECODER_CONVS = ("dense", "separable")
ASPP_RATES_AT_STRIDE_16 = (6, 12, 18)


def default_aspp_rates(output_stride: int) -> tuple[int, ...]:
    """(6, 12, 18) at output stride 16, doubled at 8 (DeepLab v3, section 4.1)."""
    return tuple(rate * 16 // output_stride for rate in ASPP_RATES_AT_STRIDE_16)


def atrous_spatial_pyramid_pooling(features, *, filters: int, rates: Sequence[int],
                                   dropout: float, name: str = "aspp",
                                   fused_batchnorm: bool = True):
    """ASPP as in DeepLab v3: parallel 1x1, 3x3 atrous (one per rate) and image-pooling
    branches, concatenated and projected by a 1x1 conv + BN + ReLU, then dropout; layers
    named ``{name}_...``.

    The image-pooling branch resizes the output of its 1x1 conv + BN + ReLU (``filters``
    channels) to the feature map's runtime size, not the pooled input features.
    """
    fused = dict(fused_batchnorm=fused_batchnorm)
    branches = [conv_bn_relu(features, filters, 1, name=f"{name}_1x1", **fused)]
    for index, rate in enumerate(rates, start=1):
        branches.append(conv_bn_relu(features, filters, 3, dilation_rate=rate,
                                     name=f"{name}_atrous{index}", **fused))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool_average")(features)
    pooled = conv_bn_relu(pooled, filters, 1, name=f"{name}_pool", **fused)
    branches.append(ResizeToMatch(name=f"{name}_pool_resize")([pooled, features]))
    merged = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    projected = conv_bn_relu(merged, filters, 1, name=f"{name}_project", **fused)
    return keras.layers.Dropout(dropout, name=f"{name}_dropout")(projected)


def _classify_and_resize(features, image, num_classes: int):
    """1x1 classifier and bilinear resize to the image size, both in float32 so the logits
    stay float32 under a mixed-precision policy."""
    logits = keras.layers.Conv2D(num_classes, 1, name="classifier", dtype="float32")(features)
    return ResizeToMatch(name="logits", dtype="float32")([logits, image])


def _check_head_arguments(num_classes: int, output_stride: int, dropout: float) -> None:
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if output_stride not in DEEPLAB_OUTPUT_STRIDES:
        raise ValueError(f"output_stride {output_stride}: DeepLab supports 16 or 8")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _deeplab_encoder(model_name, *, input_shape, backbone, output_stride, backbone_weights,
                     multi_grid, width_multiplier, aspp_filters, aspp_rates, dropout,
                     fused_batchnorm):
    check_input_shape(input_shape, output_stride, model_name)
    encoder = build_backbone(
        backbone, input_shape=input_shape, output_stride=output_stride,
        weights=backbone_weights, multi_grid=multi_grid, width_multiplier=width_multiplier,
        fused_batchnorm=fused_batchnorm)
    rates = default_aspp_rates(output_stride) if aspp_rates is None else tuple(aspp_rates)
    aspp = atrous_spatial_pyramid_pooling(
        backbone_features(encoder, backbone, 32), filters=aspp_filters, rates=rates,
        dropout=dropout, fused_batchnorm=fused_batchnorm)
    return encoder, aspp


def build_deeplabv3(
    *,
    num_classes: int,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    backbone: str = "resnet50",
    output_stride: int = 16,
    backbone_weights: WeightsArg = None,
    multi_grid: Sequence[int] | None = None,
    width_multiplier: float = 1.0,
    dropout: float = 0.1,
    aspp_filters: int = 256,
    aspp_rates: Sequence[int] | None = None,
    fused_batchnorm: bool = True,
) -> keras.Model:
    """DeepLab v3: RGB images 0..255 [B, H, W, 3] -> float32 logits [B, H, W, num_classes].

    Args:
        num_classes: number of classes (logit channels).
        input_shape: ``(H, W, 3)``; H and W multiples of ``output_stride``, or None.
        backbone: ``"resnet50"`` or ``"mobilenetv2"``.
        output_stride: 16 or 8: input size / backbone feature size.
        backbone_weights: None, ``"imagenet"`` or a weights file path (see
            :func:`pixelwise.models.backbones.build_backbone`).
        multi_grid: ResNet50 conv5 rate multipliers, e.g. ``(1, 2, 4)``.
        width_multiplier: MobileNetV2's alpha.
        dropout: dropout rate after the ASPP projection.
        aspp_filters: channels of every ASPP branch and of the projection (256 in the paper).
        aspp_rates: rates of the 3x3 atrous branches; default (6, 12, 18) x 16 / output_stride.
        fused_batchnorm: every BatchNormalization is a
            :class:`~pixelwise.models.batchnorm.FusedBatchNormalization` (TensorFlow's fused
            kernel, same weights and config); False: Keras's own layer.

    Example:
        >>> model = build_deeplabv3(num_classes=21)
        >>> model(np.zeros((1, 64, 96, 3))).shape  # (1, 64, 96, 21)
    """
    _check_head_arguments(num_classes, output_stride, dropout)
    encoder, aspp = _deeplab_encoder(
        "deeplabv3", input_shape=input_shape, backbone=backbone, output_stride=output_stride,
        backbone_weights=backbone_weights, multi_grid=multi_grid,
        width_multiplier=width_multiplier, aspp_filters=aspp_filters, aspp_rates=aspp_rates,
        dropout=dropout, fused_batchnorm=fused_batchnorm)
    logits = _classify_and_resize(aspp, encoder.input, num_classes)
    return keras.Model(encoder.input, logits, name=f"deeplabv3_{backbone}_os{output_stride}")


def build_deeplabv3plus(
    *,
    num_classes: int,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    backbone: str = "resnet50",
    output_stride: int = 16,
    backbone_weights: WeightsArg = None,
    multi_grid: Sequence[int] | None = None,
    width_multiplier: float = 1.0,
    dropout: float = 0.1,
    aspp_filters: int = 256,
    aspp_rates: Sequence[int] | None = None,
    low_level_filters: int = 48,
    decoder_filters: int = 256,
    decoder_conv: str = "dense",
    fused_batchnorm: bool = True,
) -> keras.Model:
    """DeepLab v3+: the DeepLab v3 encoder plus a decoder at 1/4 resolution.

    The decoder projects the backbone's 1/4-resolution features (ResNet50 ``conv2_block3_out``,
    MobileNetV2 ``block_2_add``) to ``low_level_filters`` channels with a 1x1 conv + BN +
    ReLU, concatenates them with the ASPP output resized to their size, and refines with
    two 3x3 convs of ``decoder_filters`` + BN + ReLU before the classifier and the final
    resize. ``decoder_conv="separable"`` makes those two convs depthwise-separable
    (:func:`~pixelwise.models.layers.separable_conv_bn_relu`, the paper's own choice): at
    1/4 resolution they are the light head's most costly layers. Other arguments as
    :func:`build_deeplabv3`.
    """
    _check_head_arguments(num_classes, output_stride, dropout)
    if decoder_conv not in DECODER_CONVS:
        raise ValueError(f"decoder_conv {decoder_conv!r}: expected one of {DECODER_CONVS}")
    encoder, aspp = _deeplab_encoder(
        "deeplabv3plus", input_shape=input_shape, backbone=backbone,
        output_stride=output_stride, backbone_weights=backbone_weights, multi_grid=multi_grid,
        width_multiplier=width_multiplier, aspp_filters=aspp_filters, aspp_rates=aspp_rates,
        dropout=dropout, fused_batchnorm=fused_batchnorm)
    fused = dict(fused_batchnorm=fused_batchnorm)
    low_level = backbone_features(encoder, backbone, 4)
    low_level = conv_bn_relu(low_level, low_level_filters, 1, name="decoder_low_level", **fused)
    upsampled = ResizeToMatch(name="decoder_upsample")([aspp, low_level])
    decoded = keras.layers.Concatenate(name="decoder_concat")([upsampled, low_level])
    for index in (1, 2):
        name = f"decoder_refine{index}"
        decoded = (separable_conv_bn_relu(decoded, decoder_filters, name=name, **fused)
                   if decoder_conv == "separable"
                   else conv_bn_relu(decoded, decoder_filters, 3, name=name, **fused))
    logits = _classify_and_resize(decoded, encoder.input, num_classes)
    return keras.Model(encoder.input, logits, name=f"deeplabv3plus_{backbone}_os{output_stride}")

