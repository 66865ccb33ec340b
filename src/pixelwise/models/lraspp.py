"""LR-ASPP, the Lite Reduced ASPP head of MobileNetV3 (Howard et al. 2019, section 6.3).

    image (RGB 0..255) -> preprocessing -> atrous backbone (output stride 16 or 8)
      high: the last features, at the output stride (MobileNetV3-Large: 960 channels)
        -> branch: 1x1 conv 128 + BN + ReLU
        x  gate:   global average pool -> 1x1 conv 128 -> sigmoid (one weight per channel)
        -> dropout -> bilinear resize to the low features' size -> 1x1 classifier
      low: the backbone's features at stride 8 (Large: 40 channels) -> 1x1 classifier
      -> sum of the two classifiers -> bilinear resize to the input size = logits (float32)

The layout is torchvision's ``lraspp_mobilenet_v3_large`` (global pooling in the gate, where
the paper pools with a large kernel and stride; convs without bias before a batch norm or
the sigmoid; the classifiers with bias). The dropout before the high-resolution classifier
is pixelwise's (``dropout=0`` gives the paper's head).

Layers: ``lraspp_branch_{conv,bn,relu}``, ``lraspp_pool``, ``lraspp_gate_conv``,
``lraspp_gate`` (the sigmoid), ``lraspp_gated`` (the product), ``lraspp_dropout``,
``lraspp_upsample``, ``classifier`` (high), ``low_classifier``, ``classifier_sum`` and
``logits``. Every resize follows the runtime size of a tensor, so any input whose height and
width are multiples of the output stride works, also with ``input_shape=(None, None, 3)``.
"""

from __future__ import annotations

import keras

from pixelwise.models.backbones import (
    WeightsArg,
    backbone_features,
    build_backbone,
    check_input_shape,
)
from pixelwise.models.layers import ResizeToMatch, conv_bn_relu

LRASPP_OUTPUT_STRIDES = (8, 16)
LOW_LEVEL_STRIDE = 8
DEFAULT_BRANCH_FILTERS = 128


def lite_reduced_aspp(high, low, *, num_classes: int, filters: int, dropout: float,
                      fused_batchnorm: bool = True):
    """The LR-ASPP head on backbone features ``high`` (at the output stride) and ``low``
    (at stride 8): the summed float32 logits at ``low``'s size (see the module docstring)."""
    branch = conv_bn_relu(high, filters, 1, name="lraspp_branch", fused_batchnorm=fused_batchnorm)
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True, name="lraspp_pool")(high)
    gate = keras.layers.Conv2D(filters, 1, use_bias=False, name="lraspp_gate_conv")(pooled)
    gate = keras.layers.Activation("sigmoid", name="lraspp_gate")(gate)
    gated = keras.layers.Multiply(name="lraspp_gated")([branch, gate])
    gated = keras.layers.Dropout(dropout, name="lraspp_dropout")(gated)
    upsampled = ResizeToMatch(name="lraspp_upsample")([gated, low])
    # Both classifiers and their sum in float32, so the logits stay float32 under a
    # mixed-precision policy.
    low_logits = keras.layers.Conv2D(num_classes, 1, name="low_classifier",
                                     dtype="float32")(low)
    high_logits = keras.layers.Conv2D(num_classes, 1, name="classifier",
                                      dtype="float32")(upsampled)
    return keras.layers.Add(name="classifier_sum", dtype="float32")([low_logits, high_logits])


def build_lraspp(
    *,
    num_classes: int,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    backbone: str = "mobilenetv3large",
    output_stride: int = 16,
    backbone_weights: WeightsArg = None,
    width_multiplier: float = 1.0,
    dropout: float = 0.1,
    branch_filters: int = DEFAULT_BRANCH_FILTERS,
    fused_batchnorm: bool = True,
) -> keras.Model:
    """LR-ASPP: RGB images 0..255 [B, H, W, 3] -> float32 logits [B, H, W, num_classes].

    Args:
        num_classes: number of classes (logit channels).
        input_shape: ``(H, W, 3)``; H and W multiples of ``output_stride``, or None.
        backbone: ``"mobilenetv3large"`` (the paper's), ``"mobilenetv3small"``, or any other
            backbone of :mod:`pixelwise.models.backbones` (its taps at stride 8 and at the
            output stride are used; ``"tiny"`` for tests).
        output_stride: 16 (the paper's) or 8: where the high features are.
        backbone_weights: None, ``"imagenet"`` or a weights file path (see
            :func:`pixelwise.models.backbones.build_backbone`).
        width_multiplier: the MobileNets' alpha.
        dropout: dropout rate on the gated features before their classifier.
        branch_filters: channels of the branch and the gate (128 in the paper).
        fused_batchnorm: every BatchNormalization is a
            :class:`~pixelwise.models.batchnorm.FusedBatchNormalization`; False: Keras's own.

    Example:
        >>> model = build_lraspp(num_classes=21)
        >>> model(np.zeros((1, 64, 96, 3))).shape  # (1, 64, 96, 21)
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if output_stride not in LRASPP_OUTPUT_STRIDES:
        raise ValueError(f"output_stride {output_stride}: LR-ASPP supports 16 or 8")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if branch_filters < 1:
        raise ValueError(f"branch_filters must be at least 1, got {branch_filters}")
    check_input_shape(input_shape, output_stride, "lraspp")
    encoder = build_backbone(
        backbone, input_shape=input_shape, output_stride=output_stride,
        weights=backbone_weights, width_multiplier=width_multiplier,
        fused_batchnorm=fused_batchnorm)
    summed = lite_reduced_aspp(
        backbone_features(encoder, backbone, 32), backbone_features(encoder, backbone,
                                                                    LOW_LEVEL_STRIDE),
        num_classes=num_classes, filters=branch_filters, dropout=dropout,
        fused_batchnorm=fused_batchnorm)
    logits = ResizeToMatch(name="logits", dtype="float32")([summed, encoder.input])
    return keras.Model(encoder.input, logits, name=f"lraspp_{backbone}_os{output_stride}")


__all__ = ["LRASPP_OUTPUT_STRIDES", "build_lraspp", "lite_reduced_aspp"]
