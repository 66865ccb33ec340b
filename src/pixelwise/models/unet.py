"""U-Net (Ronneberger et al. 2015) on a ResNet50 (or MobileNetV2) encoder.

    image (RGB 0..255) -> preprocessing -> encoder (output stride 32)
      bottom: features at 1/32 (ResNet50 conv5_block3_out)
      4 x: 2x2 transposed conv, stride 2 -> concat with the encoder's features at
           1/16, 1/8, 1/4, 1/2 -> two 3x3 convs + BN + ReLU
      1 x: 2x2 transposed conv, stride 2 to full size -> two 3x3 convs + BN + ReLU
      -> dropout -> 1x1 classifier = logits (float32)

Input height and width must be multiples of 32 (or None, then the runtime input must be).
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
from pixelwise.models.layers import conv_bn_relu

# The encoder runs unmodified: its last features at 1/32, so inputs are multiples of 32.
UNET_OUTPUT_STRIDE = 32
UNET_INPUT_MULTIPLE = UNET_OUTPUT_STRIDE
SKIP_STRIDES = (16, 8, 4, 2)
DEFAULT_DECODER_FILTERS = (256, 128, 64, 32, 16)


def _decoder_stage(features, skip, filters: int, name: str, fused_batchnorm: bool):
    features = keras.layers.Conv2DTranspose(
        filters, 2, strides=2, name=f"{name}_upconv")(features)
    if skip is not None:
        features = keras.layers.Concatenate(name=f"{name}_concat")([features, skip])
    features = conv_bn_relu(features, filters, 3, name=f"{name}_refine1",
                            fused_batchnorm=fused_batchnorm)
    return conv_bn_relu(features, filters, 3, name=f"{name}_refine2",
                        fused_batchnorm=fused_batchnorm)


def build_unet(
    *,
    num_classes: int,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    backbone: str = "resnet50",
    backbone_weights: WeightsArg = None,
    width_multiplier: float = 1.0,
    dropout: float = 0.1,
    decoder_filters: Sequence[int] = DEFAULT_DECODER_FILTERS,
    fused_batchnorm: bool = True,
) -> keras.Model:
    """U-Net: RGB images 0..255 [B, H, W, 3] -> float32 logits [B, H, W, num_classes].

    Args:
        num_classes: number of classes (logit channels).
        input_shape: ``(H, W, 3)``; H and W multiples of 32, or None.
        backbone: ``"resnet50"`` or ``"mobilenetv2"`` (the encoder, unmodified: stride 32).
        backbone_weights: None, ``"imagenet"`` or a weights file path.
        width_multiplier: MobileNetV2's alpha.
        dropout: dropout rate before the classifier.
        decoder_filters: channels of the five decoder stages, from 1/16 up to full size.
        fused_batchnorm: every BatchNormalization is a
            :class:`~pixelwise.models.batchnorm.FusedBatchNormalization`; False: Keras's own.

    Example:
        >>> model = build_unet(num_classes=21)
        >>> model(np.zeros((1, 64, 96, 3))).shape  # (1, 64, 96, 21)
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if len(decoder_filters) != 5:
        raise ValueError(
            f"decoder_filters {tuple(decoder_filters)}: expected 5 stages (1/16 .. full size)")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    check_input_shape(input_shape, UNET_INPUT_MULTIPLE, "unet")
    encoder = build_backbone(
        backbone, input_shape=input_shape, output_stride=UNET_OUTPUT_STRIDE,
        weights=backbone_weights,
        width_multiplier=width_multiplier, fused_batchnorm=fused_batchnorm)
    features = backbone_features(encoder, backbone, 32)
    skips = [backbone_features(encoder, backbone, stride) for stride in SKIP_STRIDES] + [None]
    for index, (skip, filters) in enumerate(zip(skips, decoder_filters), start=1):
        features = _decoder_stage(features, skip, filters, name=f"decoder{index}",
                                  fused_batchnorm=fused_batchnorm)
    features = keras.layers.Dropout(dropout, name="classifier_dropout")(features)
    logits = keras.layers.Conv2D(num_classes, 1, name="logits", dtype="float32")(features)
    return keras.Model(encoder.input, logits, name=f"unet_{backbone}")
