"""A tiny backbone for tests: five strided conv stages with the real backbones' taps.

It has the same shape logic as ResNet50 and MobileNetV2 (feature maps at nominal strides
2, 4, 8, 16 and 32; the last stages made atrous at output stride 16 or 8) in a few
thousand parameters, so model tests whose point is shapes, strides, saving or training
mechanics build in a fraction of a second. It has no pretrained weights.

    image -> preprocessing ("tf": -1..1)
      -> 5 x (3x3 conv, stride 2 or atrous + BN + ReLU), layers ``stage{i}_conv``,
         ``stage{i}_bn`` and ``stage{i}_out``; stage i's output sits at nominal stride 2**i.
"""

from __future__ import annotations

import keras

from pixelwise.models.batchnorm import batch_normalization
from pixelwise.models.layers import AtrousConv2D, ImageNetPreprocessing

TINY_STAGE_CHANNELS = (8, 8, 16, 16, 32)
# Nominal stride -> the layer whose output is the feature map at that stride.
TINY_FEATURE_LAYERS = {2 ** stage: f"stage{stage}_out"
                       for stage in range(1, len(TINY_STAGE_CHANNELS) + 1)}


def tiny_dilation_rates(output_stride: int) -> tuple[int, ...]:
    """Dilation rate of each stage: the stages past ``output_stride`` run unstrided at
    twice the rate of the stage before (output stride 16: 1, 1, 1, 1, 2; 8: ..., 2, 4)."""
    rates, stride, rate = [], 1, 1
    for _ in TINY_STAGE_CHANNELS:
        if stride < output_stride:
            stride *= 2
        else:
            rate *= 2
        rates.append(rate)
    return tuple(rates)


def build_tiny_backbone(image: keras.KerasTensor, *, output_stride: int,
                        fused_batchnorm: bool = True) -> keras.Model:
    """The tiny backbone on the input ``image``: RGB 0..255 -> features at ``output_stride``
    (8, 16 or 32), with layers named as :data:`TINY_FEATURE_LAYERS` says."""
    features = ImageNetPreprocessing("tf", name="preprocessing")(image)
    for stage, (channels, rate) in enumerate(
            zip(TINY_STAGE_CHANNELS, tiny_dilation_rates(output_stride)), start=1):
        if rate == 1:
            conv = keras.layers.Conv2D(channels, 3, strides=2, padding="same", use_bias=False,
                                       name=f"stage{stage}_conv")
        else:
            conv = AtrousConv2D(channels, 3, padding="same", dilation_rate=rate,
                                use_bias=False, name=f"stage{stage}_conv")
        features = conv(features)
        features = batch_normalization(fused=fused_batchnorm, name=f"stage{stage}_bn")(features)
        features = keras.layers.ReLU(name=f"stage{stage}_out")(features)
    return keras.Model(image, features, name="tiny")
